"""What a relay hands a broker: the events to publish, the publisher port, layout and retention."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


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


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """How a Kafka topic is created when it is missing (a Redis Stream needs no layout)."""

    partitions: int = 6
    replication_factor: int = 1
    # The topic's `retention.ms`; None leaves the broker's default.
    retention_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of a Redis stream the relay keeps (None: no limit); the event log keeps all.

    Entries older than `max_age_ms`, and beyond about the `max_length` newest, are trimmed.
    """

    max_age_ms: int | None = None
    max_length: int | None = None


def retention_ms(hours: float) -> int | None:
    """A retention in hours as milliseconds; 0 (no limit) as None."""
    return round(hours * 3_600_000) or None
