"""A catch-up subscription: a group whose stream no longer holds its beginning reads the log.

A new group on a trimmed Redis stream (and a group left behind by trimming) reads the event
log from the beginning until caught up, then the stream from where it ended before; it ends
with every user. Tansu cannot delete a topic's old records, so on Kafka a reader that finds
every partition's earliest offset at its end stands in for a topic past its retention.
"""

import logging
from typing import Any

import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.app import create_consumer_app
from consumers.consumer import reader_options
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from infra.kafka.reader import KafkaGroupReader
from infra.kafka.urls import kafka_servers
from tests.conftest import KAFKA_PARTITIONS, KAFKA_SESSION_TIMEOUT_MS
from tests.integration.helpers import publish_raw
from tests.integration.test_consumer_healing import write_log
from tests.integration.test_faults import (
    EnvelopeLog,
    backlog,
    expected_profiles,
    profile_rows,
    settle,
    wire,
)

pytestmark = pytest.mark.integration


async def trim(redis_url: str, stream: str, keep: int) -> None:
    """Trim the stream to its `keep` newest entries, exactly."""
    client = redis.Redis.from_url(redis_url)
    try:
        await client.xtrim(stream, maxlen=keep, approximate=False)
    finally:
        await client.aclose()


async def test_a_new_group_on_a_trimmed_stream_ends_with_every_user(
    redis_consumer_settings: ConsumerSettings,
    isolated_database_url: str,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = redis_consumer_settings.model_copy(
        update={"event_log_url": isolated_database_url, "consumer_batch_size": 50}
    )
    history = backlog(80)
    await write_log(engine, history)
    await publish_raw(settings.broker_url, settings.stream, wire(history))
    await trim(settings.broker_url, settings.stream, keep=15)
    consumer = create_consumer_app(settings, ProfileProjection())
    with caplog.at_level(logging.WARNING):
        await consumer.start()
    try:
        later = backlog(10)  # after the catch-up, from the stream
        await write_log(engine, later)
        await publish_raw(settings.broker_url, settings.stream, wire(later))
        expected = await expected_profiles(EnvelopeLog([*history, *later]))
        await settle(settings, engine, expected, timeout=30)
    finally:
        await consumer.stop()
    assert "reading the event log first" in caplog.text
    assert f"caught up from the event log: {len(history)} events" in caplog.text
    # The stream's 15 entries left were covered by the log: the group moved past them.
    assert consumer.totals.duplicates == 0


async def test_a_group_left_behind_by_trimming_catches_up_when_it_starts_again(
    redis_consumer_settings: ConsumerSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    settings = redis_consumer_settings.model_copy(update={"event_log_url": isolated_database_url})
    first, missed = backlog(20), backlog(40)
    await write_log(engine, first)
    await publish_raw(settings.broker_url, settings.stream, wire(first))
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    try:
        await settle(settings, engine, await expected_profiles(EnvelopeLog(first)), timeout=20)
    finally:
        await consumer.stop()
    # While it is stopped, more comes and the stream is trimmed past where it stood.
    await write_log(engine, missed)
    await publish_raw(settings.broker_url, settings.stream, wire(missed))
    await trim(settings.broker_url, settings.stream, keep=10)
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    try:
        expected = await expected_profiles(EnvelopeLog([*first, *missed]))
        await settle(settings, engine, expected, timeout=30)
    finally:
        await consumer.stop()


async def test_without_the_log_a_new_group_on_a_trimmed_stream_says_what_it_misses(
    redis_consumer_settings: ConsumerSettings, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    history = backlog(30)
    settings = redis_consumer_settings
    await publish_raw(settings.broker_url, settings.stream, wire(history))
    await trim(settings.broker_url, settings.stream, keep=5)
    consumer = create_consumer_app(settings, ProfileProjection())
    with caplog.at_level(logging.WARNING, logger="infra.redis.reader"):
        await consumer.start()
    await consumer.stop()
    assert "without the event log" in caplog.text
    assert len(await profile_rows(engine) or []) < len(
        await expected_profiles(EnvelopeLog(history))
    )


class PastRetentionReader(KafkaGroupReader):
    """A member that finds each partition's earliest offset at its end, as after retention."""

    async def _earliest(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> Any:
        return await consumer.end_offsets(partitions)


@pytest.mark.kafka
async def test_a_new_kafka_group_past_the_retention_reads_the_log_first(
    kafka_url: str,
    redis_consumer_settings: ConsumerSettings,
    isolated_database_url: str,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = redis_consumer_settings.model_copy(
        update={
            "broker_url": kafka_url,
            "event_log_url": isolated_database_url,
            "kafka_partitions": KAFKA_PARTITIONS,
            "kafka_session_timeout_ms": KAFKA_SESSION_TIMEOUT_MS,
        }
    )
    history = backlog(40)
    await write_log(engine, history)
    await publish_raw(settings.broker_url, settings.stream, wire(history))
    projection = ProfileProjection()
    reader = PastRetentionReader(
        kafka_servers(settings.broker_url), reader_options(settings, projection)
    )
    consumer = create_consumer_app(settings, projection, reader=reader)
    with caplog.at_level(logging.WARNING, logger="infra.kafka.catch_up"):
        await consumer.start()
    try:
        later = backlog(8)
        await write_log(engine, later)
        await publish_raw(settings.broker_url, settings.stream, wire(later))
        expected = await expected_profiles(EnvelopeLog([*history, *later]))
        await settle(settings, engine, expected, timeout=40)
    finally:
        await consumer.stop()
    assert "reading the event log first" in caplog.text
