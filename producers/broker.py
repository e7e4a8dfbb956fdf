"""The broker behind one `publish`: a Redis/Valkey Stream or a Kafka topic, by URL."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from events.brokers import broker_kind, kafka_servers
from producers.settings import RelaySettings


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox row to publish: its envelope as JSON, and the attributes brokers index by."""

    outbox_id: int
    subject: UUID
    payload: str
    event_id: UUID
    type: str
    sequence: int
    time: datetime
    source: str


class EventPublisher(Protocol):
    """Publishes events in the given order; returns only once the broker has accepted all."""

    async def connect(self) -> None:
        """Open the broker connection."""
        ...

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Publish, in order; raises if the broker did not accept every event."""
        ...

    async def close(self) -> None:
        """Close the broker connection."""
        ...


def make_publisher(settings: RelaySettings) -> EventPublisher:
    """The publisher for the configured broker URL."""
    # Imported here: each broker's client library loads only when that broker is used.
    if broker_kind(settings.broker_url) == "kafka":
        from producers.kafka import KafkaPublisher

        return KafkaPublisher(
            kafka_servers(settings.broker_url),
            settings.stream,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            idempotent=settings.kafka_idempotent_producer,
        )
    from producers.redis_stream import RedisStreamPublisher

    return RedisStreamPublisher(settings.broker_url, settings.stream)
