"""A consumer heals from the event log: sequence gaps backfilled, a vanished group made again.

The log is the test database's `auth.outbox` (USERBUS_EVENT_LOG_URL) or the auth service's
feed over HTTP (USERBUS_FEED_URL with a service client); the stream lacks some events.
Afterwards the profile projection equals the whole log applied once.
"""

import logging
from collections.abc import Sequence
from uuid import UUID

import pytest
import redis.asyncio as redis
from pydantic import SecretStr
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.main import create_app
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer, reader_options
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope
from infra.brokers import broker_for
from infra.event_log import EventLog, LogPage, PostgresEventLog
from producers.outbox import outbox_row, outbox_table
from tests.integration.feed_helpers import new_service_client
from tests.integration.helpers import eventually, publish_raw
from tests.integration.test_faults import (
    EnvelopeLog,
    backlog,
    expected_profiles,
    settle,
    wire,
)
from tests.integration.test_feed_client import served

pytestmark = pytest.mark.integration


async def write_log(engine: AsyncEngine, events: Sequence[Envelope]) -> None:
    """Commit the events to the auth outbox, the event log, in the order given."""
    async with engine.begin() as conn:
        await conn.execute(insert(outbox_table("auth")), [outbox_row(e) for e in events])


def with_gaps(events: Sequence[Envelope]) -> tuple[list[Envelope], list[Envelope]]:
    """(what the stream keeps, what it lost): every user's events but their last are lost."""
    last: dict[UUID, int] = {}
    for event in events:
        last[event.user_id] = max(last.get(event.user_id, 0), event.sequence)
    kept = [e for e in events if e.sequence == last[e.user_id]]
    lost = [e for e in events if e.sequence < last[e.user_id]]
    return kept, lost


async def consume_with_gaps(
    settings: ConsumerSettings, engine: AsyncEngine, users: int, consumer: ProjectionConsumer
) -> tuple[ProjectionConsumer, int]:
    """Write the log, publish it with gaps, and consume until the projection is whole."""
    events = backlog(users)
    await write_log(engine, events)
    kept, lost = with_gaps(events)
    assert lost
    await publish_raw(settings.broker_url, settings.stream, wire(kept))
    expected = await expected_profiles(EnvelopeLog(events))
    await consumer.start()
    try:
        await settle(settings, engine, expected, timeout=40)
    finally:
        await consumer.stop()
    return consumer, len(lost)


async def test_a_sequence_gap_is_backfilled_from_the_log_database(
    consumer_settings: ConsumerSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    settings = consumer_settings.model_copy(
        update={"event_log_url": isolated_database_url, "consumer_batch_size": 7}
    )
    consumer = create_consumer_app(settings, ProfileProjection())
    consumer, lost = await consume_with_gaps(settings, engine, 60, consumer)
    assert consumer.totals.backfilled == lost
    assert consumer.totals.gaps == 0
    assert consumer.dead_lettered == 0


async def test_a_sequence_gap_is_backfilled_through_the_feed(
    redis_consumer_settings: ConsumerSettings,
    isolated_auth_settings: AuthSettings,
    engine: AsyncEngine,
) -> None:
    client_id, secret = await new_service_client(isolated_auth_settings)
    async with served(create_app(isolated_auth_settings)) as base_url:
        settings = redis_consumer_settings.model_copy(
            update={
                "feed_url": f"{base_url}/events",
                "feed_client_id": client_id,
                "feed_client_secret": SecretStr(secret),
            }
        )
        consumer = create_consumer_app(settings, ProfileProjection())
        consumer, lost = await consume_with_gaps(settings, engine, 20, consumer)
    assert consumer.totals.backfilled == lost
    assert consumer.totals.gaps == 0


class FlakyLog:
    """The database log, failing its first `failures` calls for a user's events."""

    def __init__(self, inner: EventLog, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def page(self, after: int, limit: int) -> LogPage:
        return await self.inner.page(after, limit)

    async def events_of(self, user_id: UUID, after_sequence: int = 0) -> list[Envelope]:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("the log is away")
        return await self.inner.events_of(user_id, after_sequence)

    async def head(self) -> int:
        return await self.inner.head()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_log_that_fails_is_retried_and_nothing_is_dead_lettered(
    redis_consumer_settings: ConsumerSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    settings = redis_consumer_settings.model_copy(update={"consumer_batch_size": 5})
    log = FlakyLog(PostgresEventLog(isolated_database_url), failures=6)
    broker = broker_for(settings.broker_url)
    consumer = ProjectionConsumer(
        settings,
        ProfileProjection(),
        broker.group_reader(reader_options(settings, ProfileProjection())),
        broker.dead_letters(settings.stream),
        log=log,
    )
    consumer, lost = await consume_with_gaps(settings, engine, 30, consumer)
    assert log.failures == 0
    assert consumer.totals.backfilled == lost
    assert consumer.dead_lettered == 0


async def test_without_a_log_a_gap_is_applied_with_a_warning(
    redis_consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    events = backlog(9)
    kept, lost = with_gaps(events)
    await publish_raw(
        redis_consumer_settings.broker_url, redis_consumer_settings.stream, wire(kept)
    )
    consumer = create_consumer_app(redis_consumer_settings, ProfileProjection())
    await consumer.start()
    try:
        await eventually(lambda: _seen(consumer, len(kept)), timeout=20)
    finally:
        await consumer.stop()
    assert consumer.totals.backfilled == 0
    assert consumer.totals.gaps == len({e.user_id for e in lost})


async def _seen(consumer: ProjectionConsumer, count: int) -> bool:
    totals = consumer.totals
    return totals.applied + totals.skipped + totals.duplicates >= count


async def test_a_vanished_group_is_made_again_at_the_beginning_of_the_stream(
    redis_consumer_settings: ConsumerSettings, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # Even a group that started at the end: what the stream holds after the group vanished
    # came after it (on a restarted Valkey, the relay's repair publishes the log again).
    settings = redis_consumer_settings.model_copy(update={"consumer_start": "end"})
    before, after = backlog(5), backlog(5)
    await publish_raw(settings.broker_url, settings.stream, wire(before))
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    try:
        client = redis.Redis.from_url(settings.broker_url)
        assert settings.consumer_group is not None
        with caplog.at_level(logging.WARNING, logger="infra.redis.reader"):
            await client.xgroup_destroy(settings.stream, settings.consumer_group)
            await client.aclose()
            await publish_raw(settings.broker_url, settings.stream, wire(after))
            expected = await expected_profiles(EnvelopeLog([*before, *after]))
            await settle(settings, engine, expected, timeout=20)
    finally:
        await consumer.stop()
    assert "creating it again at the stream's beginning" in caplog.text
