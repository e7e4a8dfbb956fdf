"""What a broker shows of a stream's integrity, for the relay's check for lost data.

A stream or topic can lose what the relay published to it: a Valkey restarted without
persistence, a stream deleted, a Kafka topic deleted and created again. The relay's publisher
is also its witness: it leaves a mark with the stream (`stamp`) and reports what it finds
(`observe`): whether the mark is still there, and counters that only grow while the stream
keeps its data (Redis: entries ever added; Kafka: each partition's end offset). The relay
records them in PostgreSQL and decides (producers/loss.py); the event log in the outbox is
the truth it re-publishes from.
"""

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class StreamLostError(Exception):
    """The broker no longer holds what was published to the stream: its data was lost."""

    def __init__(self, stream: str, why: str) -> None:
        super().__init__(f"stream {stream} lost data: {why}")
        self.stream = stream
        self.why = why


@dataclass(frozen=True, slots=True)
class Observation:
    """What the broker holds of a stream now."""

    # The relay's mark is there (Redis: its marker group; Kafka: the topic exists).
    marked: bool
    # Counters that never go back while the stream keeps its data, by name.
    counters: dict[str, int] = field(default_factory=dict)
    # What this publisher knows the counters have reached (Kafka: the ends at its last stamp,
    # and the offsets the broker acked since): recorded, never compared.
    reached: dict[str, int] = field(default_factory=dict)

    def to_record(self) -> dict[str, int]:
        """The counters to compare the next observation with: the higher of both views."""
        names = self.counters.keys() | self.reached.keys()
        return {
            name: max(self.counters.get(name, 0), self.reached.get(name, 0))
            for name in sorted(names)
        }


@runtime_checkable
class StreamWitness(Protocol):
    """A publisher that can mark its stream and tell whether the stream kept its data."""

    async def observe(self) -> Observation:
        """The mark and counters the broker shows now."""
        ...

    async def recreate(self) -> None:
        """Make a lost stream exist again, unmarked, before the relay queues the log again.

        Kafka creates a deleted topic, so that the queued log is not sent into a missing
        topic meanwhile; on Redis nothing is needed (publishing waits for the mark).
        """
        ...

    async def stamp(self) -> None:
        """Mark the stream as whole (after a first start or a repair); publishing may go on.

        From then on, publishing raises StreamLostError where the broker shows that the
        stream lost its data since (Redis: the mark is gone; Kafka: offsets went back).
        """
        ...
