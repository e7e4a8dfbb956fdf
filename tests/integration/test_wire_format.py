"""Clients that are not ours read the events: redis-cli on the stream, kafka-python on Kafka.

(kcat cannot talk to the Tansu broker the tests use: its librdkafka rejects Tansu's
ApiVersion answers. Against Apache Kafka, `kcat -C -t userbus.users -e` prints the same JSON.)
"""

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.kafka.urls import kafka_servers
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.integration.helpers import broker_events, eventually
from tests.integration.test_relay import write_history

pytestmark = pytest.mark.integration


@pytest.fixture
async def published(engine: AsyncEngine, relay_settings: RelaySettings) -> AsyncIterator[int]:
    """Two users' histories, relayed to the test's stream or topic; yields the event count."""
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(relay_settings).run(stop))
    try:
        await write_history(engine, users=2, changes=1)

        async def all_there() -> bool:
            return len(await broker_events(relay_settings.broker_url, relay_settings.stream)) == 4

        await eventually(all_there)
        yield 4
    finally:
        stop.set()
        await task


def read_with_kafka_python(server: str, topic: str, count: int) -> list[Any]:
    """The topic's records read by kafka-python, a client that shares no code with ours."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=server, auto_offset_reset="earliest", group_id=None,
        consumer_timeout_ms=5000,
    )  # fmt: skip
    try:
        records = []
        for record in consumer:
            records.append(record)
            if len(records) == count:
                break
        return records
    finally:
        consumer.close()


def read_with_redis_cli(url: str, stream: str) -> str:
    """XRANGE of the stream as redis-cli prints it."""
    redis_cli = shutil.which("redis-cli")
    assert redis_cli is not None, "redis-cli (Debian's redis-tools) is needed"
    return subprocess.run(
        [redis_cli, "-u", url, "--raw", "XRANGE", stream, "-", "+"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip


async def test_the_events_are_readable_json_to_a_foreign_client(
    published: int, relay_settings: RelaySettings
) -> None:
    if relay_settings.broker_url.startswith("kafka"):
        [server] = kafka_servers(relay_settings.broker_url)
        records = await asyncio.to_thread(
            read_with_kafka_python, server, relay_settings.stream, published
        )
        assert len(records) == published
        for record in records:
            event = json.loads(record.value)
            headers = {key: value.decode() for key, value in record.headers}
            assert record.key.decode() == event["subject"]  # one user, one partition
            assert headers["ce_type"] == event["type"]
            assert headers["ce_id"] == event["id"]
            assert headers["ce_subject"] == event["subject"]
            assert headers["ce_source"] == event["source"]
            assert headers["ce_time"] == event["time"]
            assert headers["ce_sequence"] == str(event["sequence"])
            assert headers["content-type"] == "application/cloudevents+json"
            assert event["specversion"] == "1.0"
    else:
        output = await asyncio.to_thread(
            read_with_redis_cli, relay_settings.broker_url, relay_settings.stream
        )
        lines = output.splitlines()
        values = [lines[i + 1] for i, line in enumerate(lines) if line == "__data__"]
        events = [json.loads(value) for value in values]
        assert len(events) == published
        assert {event["type"] for event in events} == {"UserRegistered", "PasswordChanged"}
        assert all(event["specversion"] == "1.0" for event in events)


async def test_a_users_events_go_to_the_partition_any_keyed_kafka_producer_picks(
    published: int, relay_settings: RelaySettings
) -> None:
    if not relay_settings.broker_url.startswith("kafka"):
        pytest.skip("Kafka partitions only")
    [server] = kafka_servers(relay_settings.broker_url)
    records = await asyncio.to_thread(
        read_with_kafka_python, server, relay_settings.stream, published
    )
    partitions = relay_settings.kafka_partitions
    # Kafka's default partitioner (Java's, kafka-python's): murmur2 of the key, positive,
    # modulo the partition count. The relay fills batches per partition itself; it must land
    # every event where a keyed send would, or a user's events would split across partitions.
    assert len(records) == published
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % partitions
