"""Telling brokers apart by URL, and reading Kafka bootstrap servers."""

import pytest

from infra.brokers import broker_kind
from infra.kafka.urls import kafka_servers


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
