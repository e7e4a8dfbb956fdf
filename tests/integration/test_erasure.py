"""Erasure end to end: API, relay and Redis; after the grace period no trace of a deleted user.

Nothing in the log, nothing on the stream; a consumer group that lagged behind and replays of
the profiles and audit projections apply the redacted events without a dead letter, and
keep no trace either.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from typer.testing import CliRunner

from auth.maintenance.run import PruneReport, prune_once
from auth.maintenance.settings import PruneSettings
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.replay.stamp import stamp
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import dead_letter_stream
from events.erasure import erased_email, erased_username
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, eventually, login, register
from userbus.cli import app

pytestmark = pytest.mark.integration


@dataclass
class Deleted:
    """A user who registered, changed their profile and deleted their account."""

    user_id: uuid.UUID
    traces: list[str]  # everything that named them: username, addresses, display names


@pytest.fixture
async def relayed(
    isolated_database_url: str, redis_url: str, stream: str
) -> AsyncIterator[RelaySettings]:
    """A relay publishing this test's outbox to this test's Redis stream while the test runs."""
    settings = RelaySettings(
        database_url=isolated_database_url, broker_url=redis_url, stream=stream
    )
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(settings).run(stop))
    yield settings
    stop.set()
    await task


async def live_a_life(settings: AuthSettings) -> tuple[Deleted, str]:
    """A user's whole life through the API, beside a bystander's registration."""
    name = unique_username("victim")
    traces = [name, f"{name}@example.com", f"{name}@example.org", "Victim Display", "Renamed V"]
    async with api_client(settings) as client:
        response = await client.post(
            "/users",
            json={
                "username": name, "email": traces[1], "password": "a long passphrase",
                "display_name": traces[3],
            },
        )  # fmt: skip
        assert response.status_code == 201, response.text
        user_id = uuid.UUID(response.json()["id"])
        token = await login(client, name)
        for change in ({"display_name": traces[4]}, {"email": traces[2]}):
            response = await client.put(f"/users/{name}", json=change, headers=bearer(token))
            assert response.status_code == 200, response.text
        bystander = unique_username("bystander")
        await register(client, bystander)
        response = await client.delete(f"/users/{name}", headers=bearer(token))
        assert response.status_code == 204
    return Deleted(user_id, traces), bystander


async def traces_in_log(database_url: str, traces: list[str]) -> int:
    """Rows of auth.outbox whose envelope contains any of the traces (any case)."""
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM auth.outbox WHERE lower(payload::text) LIKE ANY($1::text[])",
            [f"%{trace.lower()}%" for trace in traces],
        )
        return count
    finally:
        await conn.close()


async def stream_text(redis_url: str, stream: str) -> tuple[int, str]:
    """The number of entries on the stream, and all of them as one lower-case text."""
    client = redis.Redis.from_url(redis_url)
    try:
        found: Any = await client.xrange(stream)
        return len(found), str(found).lower()
    finally:
        await client.aclose()


async def wait_until_published(database_url: str) -> None:
    """Until the relay has published every event of the outbox."""

    async def published() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return bool(await conn.fetchval("SELECT count(*) = 0 FROM auth.outbox_pending"))
        finally:
            await conn.close()

    await eventually(published)


async def prune(database_url: str, redis_url: str, stream: str, grace: float) -> PruneReport:
    """One `userbus prune` with this grace period."""
    settings = PruneSettings(
        database_url=database_url, broker_url=redis_url, stream=stream, erasure_grace_seconds=grace
    )
    return await prune_once(settings)


async def test_after_the_grace_period_no_trace_is_left_in_log_stream_or_projections(
    isolated_auth_settings: AuthSettings,
    isolated_database_url: str,
    redis_url: str,
    stream: str,
    relayed: RelaySettings,
) -> None:
    url = isolated_database_url
    victim, bystander = await live_a_life(isolated_auth_settings)
    await wait_until_published(url)
    # A group that has read nothing yet: it lags behind the whole erasure.
    lagging = f"lagging-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    await client.xgroup_create(stream, lagging, id="0")
    await client.aclose()
    entries_before, text_before = await stream_text(redis_url, stream)
    assert victim.traces[0].lower() in text_before

    # Within the grace period nothing is redacted.
    early = await prune(url, redis_url, stream, grace=900)
    assert (early.erased.users, early.erased.broker_users) == (0, 0)
    assert await traces_in_log(url, victim.traces) == 4

    report = await prune(url, redis_url, stream, grace=0)

    assert (report.erased.users, report.erased.events) == (1, 4)
    assert (report.erased.broker.removed, report.erased.broker.appended) == (4, 4)
    assert await traces_in_log(url, victim.traces) == 0
    assert await traces_in_log(url, [bystander, f"{bystander}@example.com"]) == 1
    # Every row, redacted or not, carries the stamp its writer gives its payload now.
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT payload::text, contract FROM auth.outbox")
    finally:
        await conn.close()
    assert rows
    assert all(row["contract"] == stamp(row["payload"]) for row in rows)
    assert all(row["contract"] is not None for row in rows)
    entries_after, text_after = await stream_text(redis_url, stream)
    assert entries_after == entries_before
    assert not [trace for trace in victim.traces if trace.lower() in text_after]
    assert erased_username(victim.user_id) in text_after
    assert bystander.lower() in text_after

    # The lagging group applies the redacted history: no profile of the victim, no dead letter.
    consumer_settings = ConsumerSettings(
        database_url=url, broker_url=redis_url, stream=stream, consumer_group=lagging
    )
    consumer = create_consumer_app(consumer_settings, ProfileProjection())
    await consumer.start()
    try:

        async def caught_up() -> bool:
            conn = await asyncpg.connect(url)
            try:
                applied = await conn.fetchval(
                    "SELECT sequence FROM profiles.tracking WHERE subject = $1", victim.user_id
                )
                return applied == 4
            finally:
                await conn.close()

        await eventually(caught_up)
    finally:
        await consumer.stop()
    assert await profile_names(url) == [bystander]
    dead_letters, _ = await stream_text(redis_url, dead_letter_stream(stream))
    assert dead_letters == 0

    # Replays from the redacted log, through the command, keep no trace either.
    for name in ("profiles", "audit"):
        env = {"USERBUS_DATABASE_URL": url}
        result = await asyncio.to_thread(CliRunner().invoke, app, ["replay", name], env=env)
        assert result.exit_code == 0, result.output
        assert "0 rejected" in result.output
    assert await profile_names(url) == [bystander]
    audit = await audit_rows(url, victim.user_id)
    # The audit keeps the fact of each event, not who it was.
    assert [row["type"] for row in audit] == [
        "UserRegistered", "UserUpdated", "UserUpdated", "UserDeleted",
    ]  # fmt: skip
    assert not [trace for trace in victim.traces if trace.lower() in str(audit).lower()]

    # Done once: a later prune finds nothing more to do.
    again = await prune(url, redis_url, stream, grace=0)
    assert (again.erased.users, again.erased.broker_users, again.erased.broker.removed) == (0, 0, 0)


async def profile_names(database_url: str) -> list[str]:
    """The usernames in the profile projection."""
    conn = await asyncpg.connect(database_url)
    try:
        return [row[0] for row in await conn.fetch("SELECT username FROM profiles.profiles")]
    finally:
        await conn.close()


async def audit_rows(database_url: str, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The audit projection's rows of one user, in sequence order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT type, sequence, data::text AS data FROM audit.events WHERE user_id = $1"
            " ORDER BY sequence",
            user_id,
        )
        return [dict(row) for row in rows]
    finally:
        await conn.close()


async def test_no_account_can_take_an_erased_address(auth_settings: AuthSettings) -> None:
    address = erased_email(uuid.uuid4())
    async with api_client(auth_settings) as client:
        response = await client.post(
            "/users",
            json={"username": unique_username(), "email": address, "password": "a long passphrase"},
        )
    assert response.status_code == 422
