"""Which broker a URL names (`redis://`, `rediss://`, `unix://` or `kafka://host:port,...`)."""

import logging
from typing import Literal

BrokerKind = Literal["redis", "kafka"]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
KAFKA_SCHEME = "kafka://"

logger = logging.getLogger(__name__)


def broker_kind(url: str) -> BrokerKind:
    """The kind of broker behind `url`; ValueError for any other scheme."""
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    if url.startswith(KAFKA_SCHEME):
        kafka_servers(url)
        return "kafka"
    raise ValueError("the broker URL must start with redis://, rediss://, unix:// or kafka://")


def kafka_servers(url: str) -> list[str]:
    """The bootstrap servers of a `kafka://host:port[,host:port]` URL."""
    if not url.startswith(KAFKA_SCHEME):
        raise ValueError("a Kafka URL starts with kafka://")
    hosts = url.removeprefix(KAFKA_SCHEME).rstrip("/")
    servers = [server.strip() for server in hosts.split(",") if server.strip()]
    if not servers or any(":" not in server for server in servers):
        raise ValueError("a Kafka URL lists host:port pairs: kafka://host:9092[,host2:9092]")
    return servers


async def ensure_topic(
    servers: list[str], topic: str, partitions: int, replication_factor: int
) -> bool:
    """Create the Kafka topic unless it exists; whether this call created it.

    Both the relay and the consumers call it, so whichever starts first finds the topic
    ready (a consumer subscribed to a missing topic would notice it only minutes later).
    """
    # Imported here: the contract stays importable without the Kafka client.
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        # Asked first: some Kafka-compatible brokers (Tansu) answer a CreateTopics for an
        # existing topic with success, which would misreport it as created.
        if topic in await admin.list_topics():
            return False
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)]
        )
    except TopicAlreadyExistsError:
        return False
    finally:
        await admin.close()
    logger.info("created topic %s (%d partitions)", topic, partitions)
    return True
