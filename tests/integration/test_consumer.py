"""The consumer toolkit on real Redis and PostgreSQL: exactly-once effect, crashes, bad input."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.errors import ConsumerFailedError
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, Event, UserDeleted, UserRegistered, to_envelope
from infra.brokers import broker_for
from infra.dead_letters import DeadLetter
from tests.integration.helpers import eventually, publish_raw, unacknowledged

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def registered(name: str | None = None) -> Envelope:
    """A UserRegistered envelope of a new user."""
    name = name or f"user_{uuid.uuid4().hex[:8]}"
    event = UserRegistered(
        user_id=uuid.uuid4(),
        username=name,
        email=f"{name}@example.com",
        role="user",
        registered_at=NOW,
    )
    return to_envelope(event, sequence=1, source="/test")


def deleted(envelope: Envelope, sequence: int = 2) -> Envelope:
    """The UserDeleted envelope that follows a registration."""
    event = UserDeleted(
        user_id=envelope.user_id, username=envelope.data["username"], deleted_at=NOW
    )
    return to_envelope(event, sequence=sequence, source="/test")


async def xadd(broker_url: str, stream: str, payloads: Sequence[Envelope | bytes]) -> None:
    """Append envelopes (or raw bytes) to the stream or topic, as the relay does."""
    await publish_raw(
        broker_url,
        stream,
        [p.model_dump_json().encode() if isinstance(p, Envelope) else p for p in payloads],
    )


async def profiles(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """The profile table, ordered."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM profiles.profiles ORDER BY user_id"))
        return [tuple(row) for row in rows]


async def pending(settings: ConsumerSettings) -> int:
    """Messages the consumer's group has received but not acknowledged or committed."""
    group = settings.consumer_group or ProfileProjection.name
    return await unacknowledged(settings.broker_url, settings.stream, group)


@pytest.fixture
async def consumer(consumer_settings: ConsumerSettings) -> AsyncIterator[ProjectionConsumer]:
    """A started profile consumer on this test's stream."""
    consumer = create_consumer_app(consumer_settings, ProfileProjection())
    await consumer.start()
    yield consumer
    await consumer.stop()


async def test_registration_and_deletion_are_applied(
    consumer: ProjectionConsumer, consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    alice, bob = registered("alice"), registered("bob")
    await xadd(consumer_settings.broker_url, consumer_settings.stream, [alice, bob, deleted(bob)])

    async def only_alice() -> bool:
        rows = await profiles(engine)
        return [row[1] for row in rows] == ["alice"]

    await eventually(only_alice)
    await eventually(lambda: _zero(pending(consumer_settings)))


async def _zero(count: Any) -> bool:
    return await count == 0


async def test_a_redelivered_event_is_applied_once(
    consumer: ProjectionConsumer, consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    carol = registered("carol")
    gone = deleted(carol)
    # The duplicate registration arrives after the deletion: applying it again would
    # resurrect carol's profile.
    await xadd(consumer_settings.broker_url, consumer_settings.stream, [carol, gone, carol, gone])

    async def all_seen() -> bool:
        return consumer.totals.applied + consumer.totals.duplicates == 4

    await eventually(all_seen)
    assert consumer.totals.duplicates == 2
    assert await profiles(engine) == []


async def test_a_new_group_starts_from_the_beginning_of_the_stream(
    consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    early = registered("early")
    await xadd(consumer_settings.broker_url, consumer_settings.stream, [early])
    consumer = create_consumer_app(consumer_settings, ProfileProjection())
    await consumer.start()
    try:

        async def applied() -> bool:
            return len(await profiles(engine)) == 1

        await eventually(applied)
    finally:
        await consumer.stop()


async def test_entries_left_unacknowledged_by_a_crash_are_applied_at_restart(
    redis_consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    # Redis Streams only: its pending list is the redelivery mechanism (Kafka's is the
    # uncommitted offset, covered below).
    consumer_settings = redis_consumer_settings.model_copy(update={"consumer_name": "crashing"})
    first = create_consumer_app(consumer_settings, ProfileProjection())
    await first.start()  # creates the group and tables
    await first.stop()
    dave = registered("dave")
    await xadd(consumer_settings.broker_url, consumer_settings.stream, [dave])
    # The same consumer name reads the entry and dies before applying or acknowledging it.
    client = redis.Redis.from_url(consumer_settings.broker_url)
    await client.xreadgroup(
        str(consumer_settings.consumer_group),
        consumer_settings.consumer_name,
        {consumer_settings.stream: ">"},
    )
    await client.aclose()
    assert await pending(consumer_settings) == 1

    restarted = create_consumer_app(consumer_settings, ProfileProjection())
    await restarted.start()
    try:
        assert [row[1] for row in await profiles(engine)] == ["dave"]
        assert await pending(consumer_settings) == 0
    finally:
        await restarted.stop()


@pytest.mark.parametrize(
    "garbage",
    [b"not json", b'{"json": "but not an envelope"}', b"[1, 2]", b'{"specversion": "1.0"}'],
)
async def test_a_message_that_is_not_an_event_goes_to_the_dead_letters(
    consumer: ProjectionConsumer,
    consumer_settings: ConsumerSettings,
    engine: AsyncEngine,
    garbage: bytes,
) -> None:
    erin = registered("erin")
    await xadd(consumer_settings.broker_url, consumer_settings.stream, [garbage, erin])

    async def erin_applied() -> bool:
        return [row[1] for row in await profiles(engine)] == ["erin"]

    await eventually(erin_applied)
    await eventually(lambda: _zero(pending(consumer_settings)))
    letters = await dead_letters(consumer_settings)
    assert len(letters) == 1
    assert letters[0].payload == garbage
    assert "not an event" in letters[0].error


async def dead_letters(settings: ConsumerSettings) -> list[DeadLetter]:
    """What the consumer put in the dead-letter stream or topic."""
    queue = broker_for(settings.broker_url).dead_letters(settings.stream)
    try:
        return [letter async for letter in queue.read()]
    finally:
        await queue.close()


class PoisonedProjection(ProfileProjection):
    """Fails on one username every time, as a handler bug or a bad event would."""

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.attempts = 0

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        if any(envelope.data.get("username") == self.poison for _, envelope in batch):
            self.attempts += 1
            raise ValueError("this event breaks the handler")
        await super().apply_many(conn, batch)


async def test_a_poison_event_is_dead_lettered_after_its_attempts_and_the_rest_applies(
    consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    settings = consumer_settings.model_copy(update={"consumer_max_attempts": 3})
    projection = PoisonedProjection("poison")
    consumer = create_consumer_app(settings, projection)
    await consumer.start()
    try:
        events = [registered("before"), registered("poison"), registered("after")]
        await xadd(settings.broker_url, settings.stream, events)

        async def settled() -> bool:
            names = sorted(row[1] for row in await profiles(engine))
            return names == ["after", "before"] and consumer.dead_lettered == 1

        await eventually(settled, timeout=20)
        await eventually(lambda: _zero(pending(settings)))
    finally:
        await consumer.stop()
    assert projection.attempts >= 3
    [letter] = await dead_letters(settings)
    assert "failed 3 times" in letter.error
    assert "this event breaks the handler" in letter.error
    assert letter.group == settings.consumer_group


async def test_an_unknown_event_type_is_skipped_and_later_events_still_apply(
    consumer: ProjectionConsumer, consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    frank = registered("frank")
    from_the_future = frank.model_copy(
        update={"type": "UserTeleported", "sequence": 2, "id": uuid.uuid4()}
    )
    await xadd(
        consumer_settings.broker_url,
        consumer_settings.stream,
        [frank, from_the_future, deleted(frank, sequence=3)],
    )

    async def frank_gone() -> bool:
        return consumer.totals.skipped == 1 and await profiles(engine) == []

    await eventually(frank_gone)
    assert consumer.totals.gaps == 0


class FlakyDatabaseProjection(ProfileProjection):
    """Fails like a database that is away for the first `failures` attempts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("SELECT 1", {}, ConnectionResetError("database went away"))
        await super().apply_many(conn, batch)


async def test_a_database_outage_is_retried_in_place_and_loses_nothing(
    consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    projection = FlakyDatabaseProjection(failures=3)
    consumer = create_consumer_app(consumer_settings, projection)
    await consumer.start()
    try:
        gina = registered("gina")
        await xadd(
            consumer_settings.broker_url, consumer_settings.stream, [gina, registered("hal")]
        )

        async def both_applied() -> bool:
            return len(await profiles(engine)) == 2

        await eventually(both_applied)
        assert projection.failures == 0
    finally:
        await consumer.stop()


async def test_entries_a_dead_member_left_pending_are_claimed_by_a_live_one(
    isolated_database_url: str, redis_url: str, stream: str, engine: AsyncEngine
) -> None:
    # Redis Streams only (on Kafka a dead member's partitions move to the live ones).
    settings = ConsumerSettings(
        database_url=isolated_database_url,
        broker_url=redis_url,
        stream=stream,
        consumer_name="survivor",
        consumer_claim_idle_ms=300,
    )
    first = create_consumer_app(settings, ProfileProjection())
    await first.start()  # creates the group and the tables
    await first.stop()
    await xadd(redis_url, stream, [registered("stranded")])
    client = redis.Redis.from_url(redis_url)
    # Another member takes the entry and dies before acknowledging it.
    await client.xreadgroup("profiles", "dead-member", {stream: ">"})
    await client.aclose()
    survivor = create_consumer_app(settings, ProfileProjection())
    await survivor.start()
    try:

        async def claimed() -> bool:
            return [row[1] for row in await profiles(engine)] == ["stranded"]

        await eventually(claimed, timeout=10)
        await eventually(lambda: _zero(pending(settings)))
    finally:
        await survivor.stop()


class SlowProjection(ProfileProjection):
    """Takes its time over each batch, so that a stop arrives mid-batch."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        self.entered.set()
        await asyncio.sleep(0.5)
        await super().apply_many(conn, batch)


async def test_stopping_finishes_the_batch_in_hand_and_acknowledges_it(
    consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    projection = SlowProjection()
    consumer = create_consumer_app(consumer_settings, projection)
    await consumer.start()
    await xadd(consumer_settings.broker_url, consumer_settings.stream, [registered("slowpoke")])
    await asyncio.wait_for(projection.entered.wait(), timeout=20)
    await consumer.stop()  # as on SIGTERM: while the handler is in the middle of the batch
    assert [row[1] for row in await profiles(engine)] == ["slowpoke"]
    assert await pending(consumer_settings) == 0


async def test_a_redis_group_that_vanishes_is_created_again_and_consuming_goes_on(
    redis_consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    # As after a Valkey restart without its data: the stream and its group are gone.
    settings = redis_consumer_settings
    redis_url, stream = settings.broker_url, settings.stream
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    try:
        await xadd(redis_url, stream, [registered("before")])
        await eventually(lambda: _count(profiles(engine), 1))
        client = redis.Redis.from_url(redis_url)
        try:
            await client.delete(stream)
        finally:
            await client.aclose()
        await asyncio.sleep(0.2)  # the reader meets the missing group
        await xadd(redis_url, stream, [registered("after")])
        await eventually(lambda: _count(profiles(engine), 2), timeout=15)
    finally:
        await consumer.stop()


async def _count(rows: Any, expected: int) -> bool:
    return len(await rows) == expected


async def test_a_consumer_whose_reader_breaks_fails_loudly_and_acknowledges_nothing(
    consumer_settings: ConsumerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = create_consumer_app(consumer_settings, ProfileProjection())

    def broken(bodies: Sequence[Any], origins: Sequence[str] = ()) -> Any:
        raise RuntimeError("a bug in decoding")

    monkeypatch.setattr(consumer, "decode", broken)
    await consumer.start()
    try:
        await xadd(consumer_settings.broker_url, consumer_settings.stream, [registered("x")])
        with pytest.raises(ConsumerFailedError):
            await asyncio.wait_for(consumer.serve(asyncio.Event()), timeout=30)
    finally:
        await consumer.stop()
    # The batch it could not decode is still to be delivered, to the process that replaces it.
    assert await pending(consumer_settings) == 1
