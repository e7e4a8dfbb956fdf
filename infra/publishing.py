"""What a relay hands a broker: the events to publish, the publisher port, a topic's layout."""

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
