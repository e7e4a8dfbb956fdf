"""Telling brokers apart by URL, reading Kafka bootstrap servers, and the broker registry."""

import subprocess
import sys

import pytest

from infra.brokers import broker_for, broker_kind
from infra.kafka.broker import KafkaBroker
from infra.kafka.urls import kafka_servers
from infra.redis.broker import RedisBroker


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://cache.example:6380/1", "redis"),
        ("unix:///run/valkey.sock", "redis"),
        ("kafka://127.0.0.1:9092", "kafka"),
        ("kafka://k1:9092,k2:9092", "kafka"),
    ],
)
def test_the_scheme_names_the_broker(url: str, kind: str) -> None:
    assert broker_kind(url) == kind


@pytest.mark.parametrize(
    "url", ["amqp://localhost", "http://x", "", "kafka://", "kafka://nohostport", "localhost:9092"]
)
def test_anything_else_is_refused_with_a_reason(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        broker_kind(url)


def test_kafka_urls_list_their_bootstrap_servers() -> None:
    assert kafka_servers("kafka://k1:9092, k2:9093/") == ["k1:9092", "k2:9093"]
    with pytest.raises(ValueError, match="kafka://"):
        kafka_servers("redis://127.0.0.1:6379/0")


def test_the_registry_hands_out_the_broker_the_url_names() -> None:
    assert isinstance(broker_for("redis://127.0.0.1:6379/0"), RedisBroker)
    kafka = broker_for("kafka://k1:9092,k2:9093")
    assert isinstance(kafka, KafkaBroker)
    assert kafka.servers == ["k1:9092", "k2:9093"]
    with pytest.raises(ValueError, match="URL"):
        broker_for("amqp://localhost")


@pytest.mark.parametrize(
    ("url", "unused"), [("redis://127.0.0.1:6379/0", "aiokafka"), ("kafka://k:9092", "redis")]
)
def test_a_broker_loads_only_its_own_client_library(url: str, unused: str) -> None:
    # In a fresh interpreter: this one has loaded both libraries long ago.
    code = (
        "import sys; from infra.brokers import broker_for; "
        f"broker = broker_for({url!r}); broker.publisher('s'); broker.dead_letters('s'); "
        f"assert {unused!r} not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
