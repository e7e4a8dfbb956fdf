"""The relay repairs a stream or topic that lost data, by publishing the retained log again.

On Redis the stream is deleted (what a Valkey restarted without persistence also does to
it); on Kafka the topic is deleted and made again. Afterwards the stream holds every event of
the outbox, each user's in order, and new events come after their user's older ones.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.domain.model import User
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork
from infra.brokers import broker_kind
from infra.kafka.admin import ensure_topic
from infra.kafka.publisher import KafkaPublisher
from infra.kafka.urls import kafka_servers
from infra.publishing import PendingEvent, TopicLayout
from infra.redis.publisher import RedisStreamPublisher
from infra.witness import StreamLostError
from producers.main import create_relay
from producers.outbox import outbox_ddl
from producers.relay import OutboxRelay, relay_backlog
from producers.settings import RelaySettings
from tests.integration.helpers import broker_events, eventually
from tests.integration.test_relay import NOW, assert_per_user_order, write_history

pytestmark = pytest.mark.integration


async def outbox_size(database_url: str) -> int:
    """How many events the outbox (the event log) holds."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM auth.outbox"))
    finally:
        await conn.close()


async def relay_state(database_url: str, stream: str) -> tuple[int, int] | None:
    """(repairs so far, events queued again by the last one) of the stream; None if unknown."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT generation, republished FROM auth.relay_state WHERE stream = $1", stream
        )
        return None if row is None else (row[0], row[1])
    finally:
        await conn.close()


async def lose_stream(broker_url: str, stream: str, *, recreate: bool = False) -> None:
    """Delete the stream (Redis) or the topic (Kafka), which `recreate` makes again."""
    if broker_kind(broker_url) == "redis":
        client = redis.Redis.from_url(broker_url)
        await client.delete(stream)
        await client.aclose()
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_servers(broker_url))
    await admin.start()
    try:
        await admin.delete_topics([stream])
    finally:
        await admin.close()
    if recreate:
        await asyncio.sleep(0.2)
        # Unless the relay has made it again already.
        await ensure_topic(kafka_servers(broker_url), stream, TopicLayout(partitions=3))


@pytest.fixture
def checking(relay_settings: RelaySettings) -> RelaySettings:
    """Relay settings that check for lost data twice a second."""
    return relay_settings.model_copy(update={"relay_loss_check_seconds": 0.5})


@pytest.fixture
async def relay(checking: RelaySettings) -> AsyncIterator[OutboxRelay]:
    """A relay checking for lost data, running in the background."""
    stop = asyncio.Event()
    relay = create_relay(checking)
    task = asyncio.create_task(relay.run(stop))
    yield relay
    stop.set()
    await task


async def all_published(settings: RelaySettings, count: int, *, timeout: float) -> None:
    """Wait until `count` distinct events are on the stream or topic; else say what is."""
    try:
        await eventually(lambda: published_count(settings, count), timeout=timeout)
    except AssertionError:
        events = await broker_events(settings.broker_url, settings.stream)
        distinct = len({event["id"] for event in events})
        backlog = await relay_backlog(settings.database_url)
        state = await relay_state(settings.database_url, settings.stream)
        raise AssertionError(
            f"{distinct} of {count} events published ({len(events)} with duplicates), "
            f"{backlog} queued, relay state {state}"
        ) from None


async def published_count(settings: RelaySettings, count: int) -> bool:
    """Whether the stream or topic holds `count` distinct events, and nothing waits to go.

    Delivery is at least once: a batch the broker failed part-way (Tansu, on a topic just
    made again) is published again whole.
    """
    events = await broker_events(settings.broker_url, settings.stream)
    distinct = len({event["id"] for event in events})
    return distinct == count and await relay_backlog(settings.database_url) == 0


async def test_a_lost_stream_gets_the_whole_log_again_in_per_user_order(
    engine: AsyncEngine,
    checking: RelaySettings,
    relay: OutboxRelay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = await write_history(engine, users=10, changes=1)
    await eventually(lambda: published_count(checking, 20), timeout=20)

    with caplog.at_level(logging.WARNING, logger="producers.loss"):
        await lose_stream(checking.broker_url, checking.stream)
        if broker_kind(checking.broker_url) == "kafka":
            # Kafka shows the loss to a check, or to the acks of a batch already sent into
            # the new topic: changes come after the repair here (the README's caveat).
            await eventually(lambda: repaired(checking), timeout=30)
        # Changes committed right after the loss: they must come after their users' history
        # (on Redis, the publisher refuses the stream until the log is queued again).
        for user in users[:3]:
            await change_password(engine, user)
        await eventually(lambda: published_count(checking, 23), timeout=30)

    events = await broker_events(checking.broker_url, checking.stream)
    if broker_kind(checking.broker_url) == "redis":
        assert len(events) == 23
    assert_per_user_order(events)
    assert await relay_state(checking.database_url, checking.stream) == (1, 20)
    assert any("queued all 20 events" in r.getMessage() for r in caplog.records), caplog.text
    assert relay.loss_check is not None
    assert relay.loss_check.republished == 20


async def repaired(settings: RelaySettings) -> bool:
    """Whether the relay has repaired the stream once."""
    state = await relay_state(settings.database_url, settings.stream)
    return state is not None and state[0] == 1


async def change_password(engine: AsyncEngine, user: User) -> None:
    """Change one user's password: a new event of an existing user."""
    async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.change_password("h3", reason="change", now=NOW)
        await uow.commit()


async def test_a_first_start_marks_the_stream_without_publishing_the_log_again(
    engine: AsyncEngine, checking: RelaySettings
) -> None:
    # An existing deployment's first relay with the check: its stream is taken as it is.
    unchecked = checking.model_copy(update={"relay_loss_check_seconds": 0})
    for settings, users, total in ((unchecked, 4, 4), (checking, 1, 5)):
        stop = asyncio.Event()
        task = asyncio.create_task(create_relay(settings).run(stop))
        try:
            await write_history(engine, users=users, changes=0)
            await eventually(lambda total=total: published_count(checking, total))
            await asyncio.sleep(1.2)  # two more checks
        finally:
            stop.set()
            await task
    assert len(await broker_events(checking.broker_url, checking.stream)) == 5
    assert await relay_state(checking.database_url, checking.stream) == (0, 0)


async def test_several_relays_repair_a_lost_stream_once(
    engine: AsyncEngine, checking: RelaySettings
) -> None:
    small_batches = checking.model_copy(update={"relay_batch_size": 3})
    stop = asyncio.Event()
    relays = [create_relay(small_batches) for _ in range(3)]
    tasks = [asyncio.create_task(relay.run(stop)) for relay in relays]
    try:
        users = await write_history(engine, users=12, changes=0)
        await eventually(lambda: published_count(checking, 12), timeout=20)
        await lose_stream(checking.broker_url, checking.stream)
        if broker_kind(checking.broker_url) == "kafka":
            await eventually(lambda: repaired(checking), timeout=30)
        for user in users:
            await change_password(engine, user)
        await all_published(checking, 24, timeout=30)
        await asyncio.sleep(1.2)  # more checks: none finds another loss
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    events = await broker_events(checking.broker_url, checking.stream)
    assert_per_user_order(events)
    republished = sum(relay.loss_check.republished for relay in relays if relay.loss_check)
    if broker_kind(checking.broker_url) == "redis":
        assert len(events) == 24  # each event once: the log was queued again once
        assert await relay_state(checking.database_url, checking.stream) == (1, 12)
        assert republished == 12
    else:
        # Tansu acks records sent to a deleted topic and can drop them when it is made
        # again: a second repair is then a real one, and may queue the log once more.
        state = await relay_state(checking.database_url, checking.stream)
        assert state is not None
        assert state[0] >= 1
        assert republished >= 12


async def test_the_answers_relay_keeps_its_own_relay_state(
    engine: AsyncEngine, checking: RelaySettings
) -> None:
    # Another service's outbox (producers/outbox.py) has no migration: the relay makes it.
    async with engine.begin() as conn:
        for statement in outbox_ddl("answers_test"):
            await conn.exec_driver_sql(statement)
    settings = checking.model_copy(update={"outbox_schema": "answers_test"})
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(settings).run(stop))
    conn = await asyncpg.connect(settings.database_url)
    try:

        async def recorded() -> bool:
            query = "SELECT count(*) FROM answers_test.relay_state WHERE stream = $1"
            try:
                return bool(await conn.fetchval(query, settings.stream))
            except asyncpg.UndefinedTableError:
                return False

        await eventually(recorded)
    finally:
        await conn.close()
        stop.set()
        await task


async def test_a_marked_redis_stream_that_was_deleted_refuses_publishing(
    redis_url: str, stream: str
) -> None:
    publisher = RedisStreamPublisher(redis_url, stream)
    await publisher.connect()
    client = redis.Redis.from_url(redis_url)
    try:
        await publisher.stamp()
        await publisher.publish([pending_event(1)])
        assert (await publisher.observe()).counters == {"entries-added": 1}
        await client.delete(stream)
        with pytest.raises(StreamLostError, match="marker is gone"):
            await publisher.publish([pending_event(2)])
        assert await client.exists(stream) == 0  # nothing was written
        assert not (await publisher.observe()).marked
    finally:
        await client.aclose()
        await publisher.close()


async def test_kafka_acks_below_earlier_ones_raise_stream_lost(kafka_url: str) -> None:
    topic = f"test.loss.{uuid.uuid4().hex[:8]}"
    servers = kafka_servers(kafka_url)
    publisher = KafkaPublisher(servers, topic, TopicLayout(partitions=1), idempotent=False)
    await publisher.connect()
    try:
        await publisher.stamp()
        for n in range(3):
            await publisher.publish([pending_event(n)])
        assert (await publisher.observe()).reached == {"partition-0": 3}
        await lose_stream(kafka_url, topic)
        with pytest.raises(StreamLostError, match="offsets went back"):
            await publisher.publish([pending_event(4)])
        await publisher.stamp()
        await publish_retrying(publisher, pending_event(5))  # followed afresh after a stamp
    finally:
        await publisher.close()


async def publish_retrying(publisher: KafkaPublisher, event: PendingEvent) -> None:
    """Publish as the relay does: a batch the broker failed is tried again.

    Tansu fails the first produce to a topic just made again (UnknownError).
    """
    for _ in range(20):
        try:
            await publisher.publish([event])
            return
        except StreamLostError:
            raise
        except Exception:
            await asyncio.sleep(0.2)
    await publisher.publish([event])


def pending_event(n: int) -> PendingEvent:
    """A made-up event to publish (its payload need not be an envelope here)."""
    subject = str(uuid.uuid4())
    return PendingEvent(n, subject, f'{{"n": {n}}}', str(uuid.uuid4()), "T", "/t", "t", "1")


async def test_a_redis_stream_marked_but_shorter_than_recorded_is_repaired(
    engine: AsyncEngine, redis_url: str, isolated_database_url: str, stream: str
) -> None:
    # As from a snapshot older than the last check: the mark is there, the entries are not.
    settings = RelaySettings(
        database_url=isolated_database_url,
        broker_url=redis_url,
        stream=stream,
        relay_loss_check_seconds=0.5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(settings).run(stop))
    try:
        await write_history(engine, users=6, changes=0)
        await eventually(lambda: published_count(settings, 6))
        await asyncio.sleep(1.2)  # a check records entries-added = 6
    finally:
        stop.set()
        await task
    client = redis.Redis.from_url(redis_url)
    try:
        await client.delete(stream)
        await client.xgroup_create(stream, "userbus.relay", id="$", mkstream=True)
        await client.xadd(stream, {"__data__": b"{}"})  # one entry: fewer than recorded
    finally:
        await client.aclose()
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(settings).run(stop))
    try:
        await eventually(lambda: repaired(settings))
        await eventually(lambda: published_count(settings, 6))
    finally:
        stop.set()
        await task
