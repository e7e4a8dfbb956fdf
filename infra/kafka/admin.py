"""Kafka topic admin: topics created where missing (with retention), their ends and configs."""

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from infra.publishing import TopicLayout

logger = logging.getLogger(__name__)


async def ensure_topic(
    servers: list[str], topic: str, layout: TopicLayout, security: KafkaSecurity = PLAINTEXT
) -> bool:
    """Create the Kafka topic unless it exists; whether this call created it.

    Both the relay and the consumers call it, so whichever starts first finds the topic
    ready (a consumer subscribed to a missing topic would notice it only minutes later).
    The topic gets `layout.retention_ms` as its `retention.ms` when set; a topic that
    exists already keeps its own configuration.
    """
    configs = {} if layout.retention_ms is None else {"retention.ms": str(layout.retention_ms)}
    admin = AIOKafkaAdminClient(**client_options(servers, security))
    await admin.start()
    try:
        # Asked first: some Kafka-compatible brokers (Tansu) answer a CreateTopics for an
        # existing topic with success, which would misreport it as created.
        if topic in await admin.list_topics():
            return False
        await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=layout.partitions,
                    replication_factor=layout.replication_factor,
                    topic_configs=configs,
                )
            ]
        )
    except TopicAlreadyExistsError:
        return False
    finally:
        await admin.close()
    logger.info("created topic %s (%d partitions)", topic, layout.partitions)
    return True


async def topic_ends(
    servers: list[str], topic: str, security: KafkaSecurity = PLAINTEXT
) -> dict[int, int] | None:
    """Each partition's end offset as the broker lists it; None if the topic does not exist.

    Some brokers (the Tansu the tests use) list the start of a partition's last record batch
    rather than its end; either only grows while the partition keeps its records.
    """
    consumer = AIOKafkaConsumer(**client_options(servers, security), enable_auto_commit=False)
    await consumer.start()
    try:
        # A fresh client has no metadata yet: `topics()` fetches it.
        if topic not in await consumer.topics():
            return None
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def topic_retention_ms(
    servers: list[str], topic: str, security: KafkaSecurity = PLAINTEXT
) -> int | None:
    """The topic's `retention.ms` as the broker reports it (None if it reports none)."""
    admin = AIOKafkaAdminClient(**client_options(servers, security))
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    for response in described:
        for resource in response.resources:
            for entry in resource[4]:  # (name, value, read_only, source, sensitive, synonyms)
                if entry[0] == "retention.ms" and entry[1] is not None:
                    return int(entry[1])
    return None
