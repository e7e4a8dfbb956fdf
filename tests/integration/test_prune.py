"""`userbus prune` on real PostgreSQL: what has expired goes, in batches; what is live stays."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from auth.adapters.secrets import digest
from auth.maintenance.run import prune_once
from auth.maintenance.settings import PruneSettings
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, login_pair, register
from userbus.cli import app
from userbus.prune import repeat

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


def prune_settings(database_url: str, redis_url: str, stream: str, **ages: float) -> PruneSettings:
    """Prune settings on this test's database; the ages given, the defaults otherwise."""
    return PruneSettings(database_url=database_url, broker_url=redis_url, stream=stream, **ages)


NO_AGES = {
    "prune_sessions_after_seconds": 0,
    "prune_refresh_tokens_after_seconds": 0,
    "prune_reset_tokens_after_seconds": 0,
}


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """POST /auth/refresh."""
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def sql(database_url: str, statement: str, *args: Any) -> Any:
    """Run one statement on the test's database and return its rows."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


async def session_of(database_url: str, refresh_token: str) -> uuid.UUID:
    """The session a refresh token belongs to."""
    rows = await sql(
        database_url,
        "SELECT session_id FROM auth.refresh_tokens WHERE token_hash = $1",
        digest(refresh_token),
    )
    session: uuid.UUID = rows[0][0]
    return session


async def add_reset_tokens(database_url: str, user_id: str) -> dict[str, bytes]:
    """A used, an expired and a live reset token of the user, by name."""
    now = datetime.now(UTC)
    tokens = {name: digest(uuid.uuid4().hex) for name in ("used", "expired", "live")}
    rows = [
        (tokens["used"], now - 2 * HOUR, now + HOUR, now - HOUR),
        (tokens["expired"], now - 2 * HOUR, now - HOUR, None),
        (tokens["live"], now, now + HOUR, None),
    ]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO auth.password_resets (token_hash, user_id, created_at, expires_at,"
            " used_at) VALUES ($1, $2, $3, $4, $5)",
            [(h, uuid.UUID(user_id), c, e, u) for h, c, e, u in rows],
        )
    finally:
        await conn.close()
    return tokens


async def test_ended_sessions_and_spent_tokens_go_and_live_ones_stay(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    url = isolated_database_url
    async with api_client(isolated_auth_settings) as client:
        username = unique_username()
        user = await register(client, username)
        live = await login_pair(client, username)
        expired = await login_pair(client, username)
        revoked = await login_pair(client, username)
        rotated = await login_pair(client, username)
        # Two rotations: the first token used and expired, the second used but unexpired.
        second = (await refresh(client, rotated["refresh_token"])).json()
        third = (await refresh(client, second["refresh_token"])).json()
        assert (
            await client.post("/auth/logout", json={"refresh_token": revoked["refresh_token"]})
        ).status_code == 204
        await sql(
            url,
            "UPDATE auth.sessions SET expires_at = now() - interval '1 hour' WHERE id = $1",
            await session_of(url, expired["refresh_token"]),
        )
        await sql(
            url,
            "UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 hour'"
            " WHERE token_hash = $1",
            digest(rotated["refresh_token"]),
        )
        resets = await add_reset_tokens(url, user["id"])

        report = await prune_once(prune_settings(url, redis_url, stream, **NO_AGES))

        assert (report.pruned.sessions, report.pruned.refresh_tokens) == (2, 3)
        assert report.pruned.reset_tokens == 2
        sessions = {row[0] for row in await sql(url, "SELECT id FROM auth.sessions")}
        assert sessions == {
            await session_of(url, live["refresh_token"]),
            await session_of(url, third["refresh_token"]),
        }
        kept = {row[0] for row in await sql(url, "SELECT token_hash FROM auth.password_resets")}
        assert kept == {resets["live"]}
        # The live sessions work on; the pruned ones are as dead as before.
        assert (
            await client.get("/users/me", headers=bearer(live["access_token"]))
        ).status_code == 200
        assert (await refresh(client, live["refresh_token"])).status_code == 200
        assert (await refresh(client, expired["refresh_token"])).status_code == 401
        assert (
            await client.get("/users/me", headers=bearer(revoked["access_token"]))
        ).status_code == 401
        # The used but unexpired token stayed: presenting it again still ends its session.
        reused = await refresh(client, second["refresh_token"])
        assert reused.json()["detail"]["code"] == "refresh_token_reused"
        assert (await refresh(client, third["refresh_token"])).status_code == 401


async def test_rows_younger_than_their_age_stay(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    async with api_client(isolated_auth_settings) as client:
        username = unique_username()
        user = await register(client, username)
        pair = await login_pair(client, username)
        assert (
            await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
        ).status_code == 204
    await add_reset_tokens(isolated_database_url, user["id"])

    # The defaults keep a day: a session ended now and tokens spent an hour ago stay.
    report = await prune_once(prune_settings(isolated_database_url, redis_url, stream))

    assert (report.pruned.sessions, report.pruned.refresh_tokens) == (0, 0)
    assert report.pruned.reset_tokens == 0
    assert len(await sql(isolated_database_url, "SELECT 1 FROM auth.password_resets")) == 3


async def test_many_rows_go_in_batches(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    async with api_client(isolated_auth_settings) as client:
        username = unique_username()
        await register(client, username)
        for _ in range(7):
            await login_pair(client, username)
    await sql(
        isolated_database_url, "UPDATE auth.sessions SET expires_at = now() - interval '1 day'"
    )

    settings = prune_settings(
        isolated_database_url, redis_url, stream, **NO_AGES, prune_batch_size=2
    )
    report = await prune_once(settings)

    assert (report.pruned.sessions, report.pruned.refresh_tokens) == (7, 7)
    assert await sql(isolated_database_url, "SELECT 1 FROM auth.sessions") == []


async def test_the_command_prints_what_it_pruned(
    isolated_database_url: str, redis_url: str, stream: str
) -> None:
    env = {
        "USERBUS_DATABASE_URL": isolated_database_url,
        "USERBUS_BROKER_URL": redis_url,
        "USERBUS_STREAM": stream,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, ["prune"], env=env)
    assert result.exit_code == 0, result.output
    assert "pruned 0 ended sessions, 0 refresh tokens, 0 reset tokens" in result.output
    assert "erased 0 deleted users" in result.output


async def test_the_loop_runs_again_after_a_failed_run_until_stopped() -> None:
    stop = asyncio.Event()
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("the database is away")
        if calls == 3:
            stop.set()

    await asyncio.wait_for(repeat(step, stop, every=0.01), timeout=5)
    assert calls == 3


async def test_a_row_in_use_is_skipped_not_waited_for(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    async with api_client(isolated_auth_settings) as client:
        username = unique_username()
        await register(client, username)
        for _ in range(2):
            await login_pair(client, username)
    await sql(
        isolated_database_url, "UPDATE auth.sessions SET expires_at = now() - interval '1 day'"
    )
    busy = await asyncpg.connect(isolated_database_url)
    try:
        async with busy.transaction():
            # A refresh holds this session's row, as the API's own transaction would.
            locked = await busy.fetchval("SELECT id FROM auth.sessions LIMIT 1 FOR UPDATE")
            settings = prune_settings(isolated_database_url, redis_url, stream, **NO_AGES)
            report = await asyncio.wait_for(prune_once(settings), timeout=10)
    finally:
        await busy.close()

    assert report.pruned.sessions == 1
    left = await sql(isolated_database_url, "SELECT id FROM auth.sessions")
    assert [row[0] for row in left] == [locked]
