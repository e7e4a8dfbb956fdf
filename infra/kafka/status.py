"""A Kafka topic's status: its length, how far behind each named group is, dead letters."""

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events import dead_letter_stream
from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from infra.status import GroupLag, StreamStatus


async def kafka_status(
    servers: list[str],
    topic: str,
    groups: Sequence[str],
    security: KafkaSecurity = PLAINTEXT,
) -> StreamStatus:
    """The status of `topic` and of the groups named (Kafka cannot list a topic's groups)."""
    admin = AIOKafkaAdminClient(**client_options(servers, security))
    consumer = AIOKafkaConsumer(**client_options(servers, security), enable_auto_commit=False)
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
