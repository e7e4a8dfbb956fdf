"""Reading a Kafka topic from its beginning to its end: replays, dead letters, the tests."""

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from events import Envelope, MalformedEventError, envelope_from_json
from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options

logger = logging.getLogger(__name__)


class KafkaTopicSource:
    """A Kafka topic read from its earliest offsets up to where it ended when the read began.

    Partitions are assigned by hand, with no consumer group: a replay neither joins nor
    moves the live group. Each user's events sit in one partition, in order. A position is
    the next offset of each partition (JSON). Within one process a replay goes on from it;
    a replay resumed in another process reads the topic again from its start, because an
    offset names a record only while the topic is not recreated (self-healing recreates
    topics), and a stale offset would silently skip the records of the new topic.
    """

    def __init__(self, servers: list[str], topic: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self._servers = servers
        self._topic = topic
        self._security = security

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Read every partition from the beginning to its end when the read began."""
        async for records in read_topic(self._servers, self._topic, size, security=self._security):
            batch = []
            for record in records:
                batch.extend(_from_record(record.value, f"{record.partition}@{record.offset}"))
            if batch:
                yield batch

    async def raw_pages(self, size: int, after: str = "") -> AsyncIterator[tuple[str, list[bytes]]]:
        """Records after the offsets in `after` up to the current ends, with the next offsets."""
        offsets = {int(p): o for p, o in json.loads(after).items()} if after else {}
        async for records in read_topic(
            self._servers, self._topic, size, offsets, security=self._security
        ):
            for record in records:
                offsets[record.partition] = record.offset + 1
            yield json.dumps(offsets, sort_keys=True), [r.value or b"" for r in records]

    def resume_from(self, position: str) -> str:
        """The beginning (see the class)."""
        return ""


async def read_topic(
    servers: list[str],
    topic: str,
    size: int,
    start: Mapping[int, int] | None = None,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> AsyncIterator[list[Any]]:
    """Every partition's records from the beginning (or `start`'s offsets), with no group."""
    consumer = AIOKafkaConsumer(
        **client_options(servers, security),
        enable_auto_commit=False,
        group_id=None,
        # An offset below what retention kept reads from the oldest record kept.
        auto_offset_reset="earliest",
    )
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
        for tp in assigned:
            if start and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
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


def _from_record(value: bytes | None, where: str) -> list[Envelope]:
    try:
        return [envelope_from_json(value or b"")]
    except MalformedEventError as exc:
        logger.warning("replay: skipping %s: %s", where, exc)
        return []
