"""Replay from the broker's history (Redis Stream, Kafka topic): complete, resumable or anew."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay import replay
from consumers.replay.sources import StreamSource
from downstream_examples.profiles.projection import ProfileProjection
from infra.brokers import broker_for, broker_kind
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.integration.helpers import eventually
from tests.integration.history import (
    expected_profiles,
    make_history,
    positions,
    seed_outbox,
    table_rows,
)
from tests.integration.test_replay_resume import CrashError, FailingAfter

pytestmark = pytest.mark.integration


async def publish_all(relay_settings: RelaySettings, count: int) -> None:
    """Run the relay until it has published `count` events."""
    stop = asyncio.Event()
    relay = create_relay(relay_settings)
    task = asyncio.create_task(relay.run(stop))

    async def done() -> bool:
        return relay.published >= count

    try:
        await eventually(done, timeout=120)
    finally:
        stop.set()
        await task


async def stream_source(relay_settings: RelaySettings) -> StreamSource:
    """The test's stream or topic as a replay source, with its length."""
    broker = broker_for(relay_settings.broker_url)
    status = await broker.status(relay_settings.stream, [])
    return StreamSource(broker.history(relay_settings.stream), status.length)


async def test_a_replay_from_the_stream_rebuilds_the_projection_and_resumes(
    isolated_database_url: str, engine: AsyncEngine, relay_settings: RelaySettings
) -> None:
    history = make_history(1_500)
    await seed_outbox(isolated_database_url, history)
    await publish_all(relay_settings, len(history))
    # Published again, as after a relay crash between the broker's ack and its commit.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO auth.outbox_pending "
                "SELECT id, subject FROM auth.outbox WHERE id <= 100"
            )
        )
    await publish_all(relay_settings, 100)
    crashing = FailingAfter(await stream_source(relay_settings), 2)
    with pytest.raises(CrashError):
        await replay(ProfileProjection(), engine, crashing, batch_size=200)

    outcome = await replay(
        ProfileProjection(),
        engine,
        await stream_source(relay_settings),
        batch_size=200,
        resume=True,
    )

    if broker_kind(relay_settings.broker_url) == "redis":
        assert outcome.resumed_at != ""  # after the checkpoint's entry: only the re-published
        assert outcome.events.duplicates == 100
    else:
        assert outcome.resumed_at == ""  # a Kafka replay reads the topic again...
        assert outcome.events.duplicates >= 100 + 400  # ...what the shadow has is skipped
    rows, tracked = expected_profiles(history)
    async with engine.connect() as conn:
        found = await table_rows(conn, "profiles", "profiles", "user_id")
        assert {row["user_id"]: row for row in found} == rows
        assert await positions(conn, "profiles") == tracked
