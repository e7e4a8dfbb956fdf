"""Fixtures shared by the example services' tests."""

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import ProjectionApplier
from downstream_examples.profiles.projection import ProfileProjection


@pytest.fixture
async def applier(engine: AsyncEngine) -> ProjectionApplier:
    """The profile projection's applier, its tables created on this test's database."""
    applier = ProjectionApplier(ProfileProjection())
    async with engine.begin() as conn:
        await applier.setup(conn)
    return applier
