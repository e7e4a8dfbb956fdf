"""Retention: the relay trims the Redis stream by age and length; Kafka topics get retention.ms."""

import asyncio
import uuid

import pytest
import redis.asyncio as redis

from infra.kafka.admin import topic_retention_ms
from infra.kafka.urls import kafka_servers
from infra.publishing import PendingEvent, Retention, TopicLayout
from infra.redis.publisher import RedisStreamPublisher
from producers.main import make_publisher
from producers.settings import RelaySettings
from tests.integration.test_relay_loss import pending_event

pytestmark = pytest.mark.integration


def events(count: int) -> list[PendingEvent]:
    """Made-up events to publish."""
    return [pending_event(n) for n in range(count)]


async def stream_length(redis_url: str, stream: str) -> int:
    """How many entries the stream holds."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(await client.xlen(stream))
    finally:
        await client.aclose()


async def test_entries_older_than_the_retention_are_trimmed_as_the_relay_publishes(
    redis_url: str, stream: str
) -> None:
    publisher = RedisStreamPublisher(redis_url, stream, Retention(max_age_ms=300))
    try:
        for _ in range(4):
            await publisher.publish(events(100))  # whole nodes of 100 entries
        await asyncio.sleep(0.4)  # those 400 are older than the retention now
        await publisher.publish(events(50))
    finally:
        await publisher.close()
    # Trimmed by whole nodes (`~`): the old ones went, the new ones stayed.
    length = await stream_length(redis_url, stream)
    assert 50 <= length < 150


async def test_the_stream_keeps_about_its_maximum_length(redis_url: str, stream: str) -> None:
    publisher = RedisStreamPublisher(redis_url, stream, Retention(max_length=200))
    try:
        for _ in range(10):
            await publisher.publish(events(100))
    finally:
        await publisher.close()
    assert 200 <= await stream_length(redis_url, stream) < 400


async def test_the_relay_trims_by_age_by_default(isolated_database_url: str, stream: str) -> None:
    settings = RelaySettings(database_url=isolated_database_url, stream=stream)
    assert settings.retention == Retention(max_age_ms=168 * 3_600_000, max_length=None)
    publisher = make_publisher(settings)
    assert isinstance(publisher, RedisStreamPublisher)
    unlimited = settings.model_copy(update={"stream_retention_hours": 0, "stream_max_length": 0})
    assert unlimited.retention == Retention()


@pytest.mark.kafka
async def test_a_topic_the_relay_creates_has_the_configured_retention(kafka_url: str) -> None:
    servers = kafka_servers(kafka_url)
    settings = RelaySettings(
        database_url="postgresql://u@db/x",
        broker_url=kafka_url,
        stream=f"test.retention.{uuid.uuid4().hex[:8]}",
        kafka_retention_hours=48,
        kafka_idempotent_producer=False,
    )
    publisher = make_publisher(settings)
    await publisher.connect()  # creates the topic
    await publisher.close()
    # Tansu stores and reports a topic's configs (whether it deletes by them is its own).
    assert await topic_retention_ms(servers, settings.stream) == 48 * 3_600_000
    # 0 leaves the broker's default (this Tansu cannot describe a topic without configs).
    assert settings.model_copy(update={"kafka_retention_hours": 0}).topic_layout == TopicLayout(
        settings.kafka_partitions, settings.kafka_replication_factor, None
    )
