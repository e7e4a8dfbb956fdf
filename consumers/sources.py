"""Event histories to replay from: the auth service's event log, or the stream itself."""

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from events import Envelope, MalformedEventError, envelope_from_json
from events.brokers import broker_kind, kafka_servers
from events.wire import STREAM_FIELD

logger = logging.getLogger(__name__)


class EventSource(Protocol):
    """A complete history of events, oldest first, each user's events in order."""

    def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """The history in batches of at most `size`."""
        ...


class OutboxLogSource:
    """The auth service's outbox table: every committed event, published or not.

    Ordered by id: one user's events are committed one after another (each change locks the
    user's row), so id order is each user's sequence order.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Read the log in id order with a server-side cursor."""
        engine = create_async_engine(self._url)
        try:
            async with engine.connect() as conn:
                result = await conn.stream(
                    text("SELECT payload::text FROM auth.outbox ORDER BY id"),
                    execution_options={"yield_per": size},
                )
                async for rows in result.partitions(size):
                    yield [envelope_from_json(row[0]) for row in rows]
        finally:
            await engine.dispose()


class RedisStreamSource:
    """A Redis Stream read with XRANGE from its first entry (duplicates included)."""

    def __init__(self, url: str, stream: str) -> None:
        self._url = url
        self._stream = stream

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Page through the stream; entries that are not envelopes are logged and skipped."""
        client = redis.Redis.from_url(self._url)
        try:
            start = "-"
            while entries := await _xrange(client, self._stream, start, size):
                batch = []
                for entry_id, fields in entries:
                    try:
                        batch.append(envelope_from_json(fields.get(STREAM_FIELD.encode(), b"")))
                    except MalformedEventError as exc:
                        logger.warning("replay: skipping stream entry %s: %s", entry_id, exc)
                yield batch
                start = "(" + entries[-1][0].decode()
        finally:
            await client.aclose()


class KafkaTopicSource:
    """A Kafka topic read from its earliest offsets up to where it ended when the read began.

    Partitions are assigned by hand, with no consumer group: a replay neither joins nor
    moves the live group. Each user's events sit in one partition, in order.
    """

    def __init__(self, servers: list[str], topic: str) -> None:
        self._servers = servers
        self._topic = topic

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Read every partition from the beginning to its end when the read began."""
        async for records in read_topic(self._servers, self._topic, size):
            batch = []
            for record in records:
                batch.extend(_from_record(record.value, f"{record.partition}@{record.offset}"))
            if batch:
                yield batch


async def read_topic(servers: list[str], topic: str, size: int) -> AsyncIterator[list[Any]]:
    """Every partition's records from the beginning, by manual assignment (no group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        # A fresh client may not have the topic's metadata yet: `topics()` fetches it.
        await consumer.topics()
        assigned = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not assigned:
            return
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        async for records in read_to_high_watermarks(consumer, assigned, size):
            yield records
    finally:
        await consumer.stop()


async def read_to_high_watermarks(
    consumer: Any, partitions: list[Any], size: int
) -> AsyncIterator[list[Any]]:
    """Records of the assigned partitions up to the high watermark each had when first fetched.

    The bound comes from fetch responses rather than ListOffsets: some Kafka-compatible
    brokers (the Tansu the tests use) answer ListOffsets with a stale end, and a replay that
    stopped there would silently miss events.
    """
    ends: dict[Any, int] = {}
    remaining = set(partitions)
    idle = 0
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=size)
        records: list[Any] = []
        for tp in remaining:
            if tp not in ends and consumer.highwater(tp) is not None:
                ends[tp] = consumer.highwater(tp)
        for tp, batch in fetched.items():
            records.extend(r for r in batch if r.offset < ends.get(tp, r.offset + 1))
        idle = 0 if fetched else idle + 1
        for tp in list(remaining):
            position = await consumer.position(tp)
            # Done at the bound; or, after two empty fetches, for a partition with nothing.
            if (tp in ends and position >= ends[tp]) or (idle >= 2 and tp not in ends):
                remaining.discard(tp)
        if records:
            yield records


def broker_source(broker_url: str, stream: str) -> EventSource:
    """The history kept by the configured broker: the Redis Stream or the Kafka topic."""
    if broker_kind(broker_url) == "kafka":
        return KafkaTopicSource(kafka_servers(broker_url), stream)
    return RedisStreamSource(broker_url, stream)


def _from_record(value: bytes | None, where: str) -> list[Envelope]:
    try:
        return [envelope_from_json(value or b"")]
    except MalformedEventError as exc:
        logger.warning("replay: skipping %s: %s", where, exc)
        return []


async def _xrange(client: "redis.Redis", stream: str, start: str, count: int) -> list[Any]:
    entries: Any = await client.xrange(stream, min=start, count=count)
    return list(entries or [])
