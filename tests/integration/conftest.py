"""Fixtures the API tests share: an app client whose audit lines are captured, a user.

A test module that defines a fixture of the same name (most API modules have their own
`client`) uses its own.
"""

from collections.abc import AsyncIterator

import httpx
import pytest

from auth.bootstrap import Overrides
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, register
from tests.unit.fakes import CapturedAudit


@pytest.fixture
def audit() -> CapturedAudit:
    """The app's audit lines."""
    return CapturedAudit()


@pytest.fixture
async def client(
    auth_settings: AuthSettings, audit: CapturedAudit
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database, its audit log captured."""
    async with api_client(auth_settings, Overrides(audit=audit.audit_log())) as client:
        yield client


@pytest.fixture
async def username(client: httpx.AsyncClient) -> str:
    """A registered user's name."""
    name = unique_username()
    await register(client, name)
    return name
