"""The erasure record and its order: every deletion queued, the broker only after the relay."""

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from auth.maintenance.run import prune_once
from auth.maintenance.settings import PruneSettings
from auth.migrations import alembic_config, upgrade
from auth.settings import AuthSettings
from infra.settings import sqlalchemy_url
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, login, register
from tests.integration.test_erasure import stream_text, traces_in_log, wait_until_published

pytestmark = pytest.mark.integration


async def fetch(database_url: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of one query on the test's database."""
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def register_and_delete(settings: AuthSettings) -> tuple[uuid.UUID, str]:
    """A user registered and deleted through the API."""
    name = unique_username()
    async with api_client(settings) as client:
        user = await register(client, name)
        token = await login(client, name)
        response = await client.delete(f"/users/{name}", headers=bearer(token))
        assert response.status_code == 204
    return uuid.UUID(user["id"]), name


async def test_every_deletion_is_recorded_for_erasure_whoever_deletes(
    isolated_auth_settings: AuthSettings, isolated_database_url: str
) -> None:
    by_api, _ = await register_and_delete(isolated_auth_settings)
    async with api_client(isolated_auth_settings) as client:
        by_sql = uuid.UUID((await register(client, unique_username()))["id"])
    await fetch(isolated_database_url, "DELETE FROM auth.users WHERE id = $1", by_sql)

    rows = await fetch(
        isolated_database_url, "SELECT user_id, erased_at, broker_erased_at FROM auth.erasures"
    )
    assert {row["user_id"] for row in rows} == {by_api, by_sql}
    assert {(row["erased_at"], row["broker_erased_at"]) for row in rows} == {(None, None)}


async def test_the_migration_queues_users_deleted_before_it(
    isolated_auth_settings: AuthSettings, isolated_database_url: str
) -> None:
    user_id, _ = await register_and_delete(isolated_auth_settings)
    await fetch(isolated_database_url, "DELETE FROM auth.erasures")
    await alembic(isolated_database_url, "downgrade", "0003")

    await upgrade(isolated_database_url)

    rows = await fetch(isolated_database_url, "SELECT user_id, deleted_at FROM auth.erasures")
    assert [row["user_id"] for row in rows] == [user_id]


async def alembic(database_url: str, action: str, revision: str) -> None:
    """Run an Alembic command on the test's database."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: getattr(command, action)(alembic_config(sync), revision)
            )
    finally:
        await engine.dispose()


async def test_the_stream_waits_for_the_relay_which_then_publishes_only_redacted_events(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    # The relay is down: the user's events are still queued when the grace period ends.
    user_id, name = await register_and_delete(isolated_auth_settings)
    settings = PruneSettings(
        database_url=isolated_database_url,
        broker_url=redis_url,
        stream=stream,
        erasure_grace_seconds=0,
    )

    first = await prune_once(settings)
    assert (first.erased.users, first.erased.broker_users) == (1, 0)
    assert await traces_in_log(isolated_database_url, [name]) == 0

    relay = RelaySettings(database_url=isolated_database_url, broker_url=redis_url, stream=stream)
    stop = asyncio.Event()
    running = asyncio.create_task(create_relay(relay).run(stop))
    await wait_until_published(isolated_database_url)
    stop.set()
    await running
    entries, text = await stream_text(redis_url, stream)
    assert entries == 2
    assert name.lower() not in text

    second = await prune_once(settings)
    assert (second.erased.users, second.erased.broker_users) == (0, 1)
    assert second.erased.broker.removed == 0  # it never held the PII
    done = await fetch(
        isolated_database_url,
        "SELECT redacted_events, broker_erased_at FROM auth.erasures WHERE user_id = $1",
        user_id,
    )
    assert done[0]["redacted_events"] == 2
    assert done[0]["broker_erased_at"] is not None


@pytest.mark.kafka
async def test_on_kafka_the_log_is_redacted_and_the_topic_left_to_its_retention(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, kafka_url: str, stream: str
) -> None:
    _, name = await register_and_delete(isolated_auth_settings)
    settings = PruneSettings(
        database_url=isolated_database_url,
        broker_url=kafka_url,
        stream=stream,
        erasure_grace_seconds=0,
    )

    first = await prune_once(settings)
    assert await traces_in_log(isolated_database_url, [name]) == 0
    # As if a relay had published the (now redacted) events.
    await fetch(isolated_database_url, "DELETE FROM auth.outbox_pending")
    second = await prune_once(settings)

    assert (first.erased.users, second.erased.broker_users) == (1, 1)
    assert second.erased.broker.rewritable is False
    assert "retention" in second.lines()[-1]
