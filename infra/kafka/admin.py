"""Kafka topic admin: the events topic (and any other) is created where it is missing."""

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from infra.publishing import TopicLayout

logger = logging.getLogger(__name__)


async def ensure_topic(servers: list[str], topic: str, layout: TopicLayout) -> bool:
    """Create the Kafka topic unless it exists; whether this call created it.

    Both the relay and the consumers call it, so whichever starts first finds the topic
    ready (a consumer subscribed to a missing topic would notice it only minutes later).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
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
                )
            ]
        )
    except TopicAlreadyExistsError:
        return False
    finally:
        await admin.close()
    logger.info("created topic %s (%d partitions)", topic, layout.partitions)
    return True
