"""Processes of one projection starting together create its tables without tripping up."""

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import ProjectionApplier
from userbus.projections import PROJECTIONS, projection_named

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
async def test_several_processes_create_a_projections_tables_at_once(
    engine: AsyncEngine, name: str
) -> None:
    # Without the setup lock, concurrent CREATE SCHEMA IF NOT EXISTS failed with a duplicate
    # key in pg_namespace: the second of two consumers started together died at once.
    async def setup() -> None:
        async with engine.begin() as conn:
            await ProjectionApplier(projection_named(name)).setup(conn)

    await asyncio.gather(*(setup() for _ in range(4)))
