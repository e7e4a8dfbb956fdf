"""How far behind each consumer group is, and how many dead letters wait."""

from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from events import dead_letter_stream
from events.brokers import broker_kind, kafka_servers


@dataclass(frozen=True)
class GroupLag:
    """One consumer group: messages not yet delivered to it, and delivered but unconfirmed."""

    group: str
    behind: int | None
    unacknowledged: int


@dataclass(frozen=True)
class StreamStatus:
    """The stream or topic, its groups, and its dead letters."""

    stream: str
    length: int
    groups: list[GroupLag]
    dead_letters: int


async def stream_status(broker_url: str, stream: str, groups: list[str]) -> StreamStatus:
    """The status of `stream` on the configured broker (Kafka: of the named groups)."""
    if broker_kind(broker_url) == "kafka":
        return await _kafka_status(kafka_servers(broker_url), stream, groups)
    return await _redis_status(broker_url, stream)


async def _redis_status(url: str, stream: str) -> StreamStatus:
    client = redis.Redis.from_url(url)
    try:
        length = int(await client.xlen(stream))
        dead = int(await client.xlen(dead_letter_stream(stream)))
        try:
            infos: Any = await client.xinfo_groups(stream)
        except redis.ResponseError:  # no such stream yet
            infos = []
        lags = [
            GroupLag(
                group=_text(info["name"]),
                # Redis 7 reports `lag` (entries not yet delivered); None when it cannot tell.
                behind=info.get("lag"),
                unacknowledged=int(info["pending"]),
            )
            for info in infos
        ]
        return StreamStatus(stream, length, lags, dead)
    finally:
        await client.aclose()


async def _kafka_status(servers: list[str], topic: str, groups: list[str]) -> StreamStatus:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        dlq = dead_letter_stream(topic)
        dlq_partitions = [TopicPartition(dlq, p) for p in consumer.partitions_for_topic(dlq) or ()]
        ends = await consumer.end_offsets(partitions + dlq_partitions) if partitions else {}
        lags = []
        for group in groups:
            committed = (
                await admin.list_consumer_group_offsets(group, partitions=partitions)
                if partitions
                else {}
            )
            behind = sum(
                ends[tp] - max(committed[tp].offset, 0) if tp in committed else ends[tp]
                for tp in partitions
            )
            # Kafka delivers and confirms in one step (the offset commit).
            lags.append(GroupLag(group=group, behind=behind, unacknowledged=0))
        return StreamStatus(
            topic,
            sum(ends[tp] for tp in partitions),
            lags,
            sum(ends[tp] for tp in dlq_partitions),
        )
    finally:
        await consumer.stop()
        await admin.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
