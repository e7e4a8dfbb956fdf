"""The broker behind one `publish`: a Redis/Valkey Stream or a Kafka topic, by URL."""

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from events.brokers import broker_kind, kafka_servers
from producers.settings import RelaySettings


class PendingEvent(NamedTuple):
    """An outbox row to publish: its envelope as JSON, and the attributes brokers index by.

    The attributes are the text that Kafka's key and `ce_` headers carry, formatted by
    PostgreSQL: a relay batch is CPU-bound, and `str(UUID)` or `isoformat` per event in
    Python cost it several percent. A tuple, so the relay builds one from a row in one call.
    """

    outbox_id: int
    subject: str  # the user id, a UUID in canonical (lower-case) form
    payload: str
    event_id: str
    type: str
    source: str
    time: str  # the envelope's `time`, exactly as the JSON carries it
    sequence: str


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
