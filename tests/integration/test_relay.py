"""The outbox relay on the real PostgreSQL and Redis: order, rollbacks, wake-up, several relays."""

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.adapters.orm import outbox
from auth.domain.model import User
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork
from events import to_envelope
from infra.brokers import broker_kind
from infra.kafka.publisher import KafkaPublisher
from infra.kafka.urls import kafka_servers
from infra.publishing import EventPublisher, PendingEvent, TopicLayout
from producers.main import create_relay, make_publisher
from producers.relay import OutboxRelay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import broker_events, eventually

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def write_history(engine: AsyncEngine, users: int, *, changes: int = 2) -> list[User]:
    """Register users and change each one's password `changes` times, each in its own commit."""
    created = []
    for _ in range(users):
        name = unique_username()
        user = User.register(username=name, email=f"{name}@example.com", password_hash="h", now=NOW)
        async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
            await uow.users.add(user)
            await uow.commit()
        created.append(user)
    for _ in range(changes):
        for user in created:
            async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
                loaded = await uow.users.get(user.id)
                assert loaded is not None
                loaded.change_password("h2", reason="change", now=NOW)
                await uow.commit()
    return created


def assert_per_user_order(events: Sequence[dict[str, Any]]) -> None:
    """Each user's events arrive with sequences 1, 2, 3... in stream order (first sightings)."""
    seen: dict[str, list[int]] = defaultdict(list)
    for event in events:
        sequences = seen[event["subject"]]
        if event["sequence"] not in sequences:
            sequences.append(event["sequence"])
    for subject, sequences in seen.items():
        assert sequences == list(range(1, len(sequences) + 1)), (subject, sequences)


@pytest.fixture
async def running_relay(relay_settings: RelaySettings) -> AsyncIterator[OutboxRelay]:
    """A relay running in the background for the test."""
    stop = asyncio.Event()
    relay = create_relay(relay_settings)
    task = asyncio.create_task(relay.run(stop))
    yield relay
    stop.set()
    await task


async def test_committed_events_reach_the_stream_in_per_user_order(
    engine: AsyncEngine, running_relay: OutboxRelay, relay_settings: RelaySettings
) -> None:
    users = await write_history(engine, users=5, changes=2)

    async def all_published() -> bool:
        return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) == 15

    await eventually(all_published)
    events = await broker_events(relay_settings.broker_url, relay_settings.stream)
    assert_per_user_order(events)
    assert {event["subject"] for event in events} == {str(user.id) for user in users}
    assert [e["type"] for e in events if e["subject"] == str(users[0].id)] == [
        "UserRegistered",
        "PasswordChanged",
        "PasswordChanged",
    ]


async def test_a_rolled_back_change_publishes_nothing(
    engine: AsyncEngine, running_relay: OutboxRelay, relay_settings: RelaySettings
) -> None:
    name = unique_username()
    user = User.register(username=name, email=f"{name}@example.com", password_hash="h", now=NOW)
    async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
        await uow.users.add(user)
        # Leaving without commit: the registration and its event are rolled back together.
    await write_history(engine, users=1, changes=0)  # a committed event after it

    async def one_published() -> bool:
        return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) >= 1

    await eventually(one_published)
    await asyncio.sleep(0.2)
    events = await broker_events(relay_settings.broker_url, relay_settings.stream)
    assert len(events) == 1
    assert events[0]["data"]["username"] != name


async def test_the_relay_wakes_on_notify_without_waiting_for_its_poll(
    engine: AsyncEngine, relay_settings: RelaySettings
) -> None:
    slow_poll = relay_settings.model_copy(update={"relay_fallback_poll_seconds": 60.0})
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(slow_poll).run(stop))
    try:
        await asyncio.sleep(0.3)  # the relay is idle, waiting
        await write_history(engine, users=1, changes=0)

        async def published() -> bool:
            return len(await broker_events(slow_poll.broker_url, slow_poll.stream)) == 1

        await eventually(published, timeout=1.0)
    finally:
        stop.set()
        await task


async def test_an_event_committed_late_with_a_smaller_id_is_not_skipped(
    engine: AsyncEngine, running_relay: OutboxRelay, relay_settings: RelaySettings
) -> None:
    early_name = unique_username("early")
    early = User.register(
        username=early_name, email=f"{early_name}@example.com", password_hash="h", now=NOW
    )
    envelope = to_envelope(early.events[0][1], sequence=1, source="/test")
    async with engine.connect() as slow:
        await slow.begin()
        # The outbox row takes the smaller id now; its transaction commits only later.
        await slow.execute(
            insert(outbox).values(
                event_id=envelope.id,
                subject=early.id,
                sequence=1,
                type=envelope.type,
                payload=envelope.model_dump(mode="json"),
                occurred_at=NOW,
            )
        )
        await write_history(engine, users=1, changes=0)  # a larger id, committed first

        async def first_published() -> bool:
            return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) == 1

        await eventually(first_published)
        await slow.commit()

    async def both_published() -> bool:
        return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) == 2

    await eventually(both_published)
    events = await broker_events(relay_settings.broker_url, relay_settings.stream)
    assert early_name in {event["data"]["username"] for event in events}


class WrappedPublisher:
    """A real publisher whose `publish` a test changes; connecting and closing pass through."""

    def __init__(self, inner: EventPublisher) -> None:
        self.inner = inner

    async def connect(self) -> None:
        await self.inner.connect()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        await self.inner.publish(events)

    async def close(self) -> None:
        await self.inner.close()


class FlakyPublisher(WrappedPublisher):
    """Fails the first `failures` batches, as a broker that is down for a while would."""

    def __init__(self, inner: EventPublisher, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        await self.inner.publish(events)


async def test_a_broker_failure_loses_nothing(
    engine: AsyncEngine, relay_settings: RelaySettings
) -> None:
    await write_history(engine, users=3, changes=1)
    publisher = FlakyPublisher(make_publisher(relay_settings), failures=3)
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(relay_settings, publisher=publisher).run(stop))
    try:

        async def all_published() -> bool:
            return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) == 6

        await eventually(all_published)
    finally:
        stop.set()
        await task
    assert publisher.failures == 0
    assert_per_user_order(await broker_events(relay_settings.broker_url, relay_settings.stream))


class OneFailsWhileAnotherPublishes(WrappedPublisher):
    """The first batch is sent and slow to return; the second fails meanwhile."""

    def __init__(self, inner: EventPublisher) -> None:
        super().__init__(inner)
        self.calls = 0
        self.first_in_flight = asyncio.Event()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        self.calls += 1
        if self.calls == 1:  # sent, and the acknowledgement takes a while
            await self.inner.publish(events)
            self.first_in_flight.set()
            await asyncio.sleep(0.3)
        elif self.calls == 2:
            await self.first_in_flight.wait()
            raise ConnectionError("broker unavailable")
        else:
            await self.inner.publish(events)


async def test_a_worker_failing_lets_the_others_commit_what_they_published(
    engine: AsyncEngine, relay_settings: RelaySettings
) -> None:
    # A failure raised into the workers' group used to cancel a sibling after its publish and
    # before its commit: its batch went out twice.
    await write_history(engine, users=6, changes=0)
    two_workers = relay_settings.model_copy(update={"relay_workers": 2, "relay_batch_size": 3})
    publisher = OneFailsWhileAnotherPublishes(make_publisher(two_workers))
    relay = create_relay(two_workers, publisher=publisher)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:

        async def all_published() -> bool:
            return len(await broker_events(two_workers.broker_url, two_workers.stream)) >= 6

        await eventually(all_published)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
    events = await broker_events(two_workers.broker_url, two_workers.stream)
    assert len(events) == 6
    assert len({event["id"] for event in events}) == 6
    assert relay.failures == {"database": 0, "broker": 1}


async def test_several_relays_publish_each_event_once_in_per_user_order(
    engine: AsyncEngine, relay_settings: RelaySettings
) -> None:
    small_batches = relay_settings.model_copy(update={"relay_batch_size": 7})
    stop = asyncio.Event()
    relays = [create_relay(small_batches) for _ in range(3)]
    tasks = [asyncio.create_task(relay.run(stop)) for relay in relays]
    try:
        await write_history(engine, users=20, changes=3)

        async def all_published() -> bool:
            return len(await broker_events(small_batches.broker_url, small_batches.stream)) >= 80

        await eventually(all_published, timeout=20)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    events = await broker_events(small_batches.broker_url, small_batches.stream)
    assert len(events) == 80
    assert len({event["id"] for event in events}) == 80
    assert_per_user_order(events)
    assert sum(relay.published for relay in relays) == 80


async def test_a_relay_batch_split_over_many_kafka_record_batches_keeps_per_user_order(
    engine: AsyncEngine, relay_settings: RelaySettings
) -> None:
    if broker_kind(relay_settings.broker_url) != "kafka":
        pytest.skip("Kafka record batches only")
    # About 1 KB an event: each partition's share of the relay batch fills several record
    # batches, which must reach the partition in the order they were filled.
    publisher = KafkaPublisher(
        kafka_servers(relay_settings.broker_url),
        relay_settings.stream,
        TopicLayout(partitions=relay_settings.kafka_partitions, replication_factor=1),
        idempotent=False,
        max_batch_bytes=2048,
    )
    users = await write_history(engine, users=5, changes=3)
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(relay_settings, publisher=publisher).run(stop))
    try:

        async def all_published() -> bool:
            return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) == 20

        await eventually(all_published)
    finally:
        stop.set()
        await task
    events = await broker_events(relay_settings.broker_url, relay_settings.stream)
    assert len({event["id"] for event in events}) == 20
    assert {event["subject"] for event in events} == {str(user.id) for user in users}
    assert_per_user_order(events)


async def test_publishing_survives_a_broker_that_forgot_its_scripts(
    engine: AsyncEngine, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    # A restarted Redis/Valkey has an empty script cache: the relay must load it again.
    relay_settings = RelaySettings(
        database_url=isolated_database_url, broker_url=redis_url, stream=stream
    )
    publisher = make_publisher(relay_settings)
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(relay_settings, publisher=publisher).run(stop))
    try:
        await write_history(engine, users=1, changes=0)

        async def published(count: int) -> bool:
            events = await broker_events(relay_settings.broker_url, relay_settings.stream)
            return len(events) == count

        await eventually(lambda: published(1))
        client = redis.Redis.from_url(relay_settings.broker_url)
        await client.script_flush()
        await client.aclose()
        await write_history(engine, users=1, changes=0)
        await eventually(lambda: published(2))
    finally:
        stop.set()
        await task
