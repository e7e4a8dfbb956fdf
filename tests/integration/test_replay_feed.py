"""`userbus replay NAME --source feed`: a rebuild through the HTTP feed, not auth's database."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from auth.main import create_app
from auth.settings import AuthSettings
from tests.integration.feed_helpers import new_service_client, service_token
from tests.integration.history import (
    expected_profiles,
    make_history,
    positions,
    seed_outbox,
    table_rows,
)
from tests.integration.test_feed_client import served
from userbus.cli import app

pytestmark = pytest.mark.integration

# The auth database, should the replay try to reach it: nobody listens there.
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/auth"


@pytest.fixture
async def feed_url(isolated_auth_settings: AuthSettings) -> AsyncIterator[str]:
    """The auth service on this test's database, its feed's URL."""
    async with served(create_app(isolated_auth_settings)) as base:
        yield f"{base}/events"


async def run_replay(args: list[str], env: dict[str, str]) -> str:
    """`userbus replay` in a thread (it runs its own event loop); what it printed."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["replay", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


async def assert_rebuilt(engine: AsyncEngine, history: list) -> None:  # type: ignore[type-arg]
    rows, tracked = expected_profiles(history)
    async with engine.connect() as conn:
        found = await table_rows(conn, "profiles", "profiles", "user_id")
        assert {row["user_id"]: row for row in found} == rows
        assert await positions(conn, "profiles") == tracked


async def test_a_replay_through_the_feed_with_a_service_token(
    feed_url: str,
    isolated_auth_settings: AuthSettings,
    isolated_database_url: str,
    engine: AsyncEngine,
) -> None:
    history = make_history(1_200)
    await seed_outbox(isolated_database_url, history)
    client_id, secret = await new_service_client(isolated_auth_settings)
    async with httpx.AsyncClient(base_url=feed_url.removesuffix("/events")) as client:
        token = await service_token(client, client_id, secret)
    env = {"USERBUS_DATABASE_URL": isolated_database_url, "USERBUS_EVENT_LOG_URL": NO_DATABASE}

    output = await run_replay(
        ["profiles", "--source", "feed", "--feed-url", feed_url, "--feed-token", token], env
    )

    assert "replayed profiles from the feed" in output
    await assert_rebuilt(engine, history)


async def test_a_replay_through_the_feed_with_client_credentials(
    feed_url: str,
    isolated_auth_settings: AuthSettings,
    isolated_database_url: str,
    engine: AsyncEngine,
) -> None:
    history = make_history(600)
    await seed_outbox(isolated_database_url, history)
    client_id, secret = await new_service_client(isolated_auth_settings)
    env = {
        "USERBUS_DATABASE_URL": isolated_database_url,
        "USERBUS_EVENT_LOG_URL": NO_DATABASE,
        "USERBUS_FEED_URL": feed_url,
        "USERBUS_FEED_CLIENT_ID": client_id,
        "USERBUS_FEED_CLIENT_SECRET": secret,
    }

    output = await run_replay(["profiles", "--source", "feed", "--batch-size", "100"], env)

    assert "replayed profiles from the feed" in output
    await assert_rebuilt(engine, history)


def test_the_feed_needs_a_url_and_a_credential(isolated_database_url: str) -> None:
    env = {"USERBUS_DATABASE_URL": isolated_database_url}
    missing_url = CliRunner().invoke(app, ["replay", "profiles", "--source", "feed"], env=env)
    assert missing_url.exit_code == 2
    assert "--feed-url" in missing_url.output
    args = ["replay", "profiles", "--source", "feed", "--feed-url", "http://auth/events"]
    missing_token = CliRunner().invoke(app, args, env=env)
    assert missing_token.exit_code == 2
    assert "service token" in missing_token.output
