"""What a consumer reads through: a group reader's port, its options and batches, histories."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from events import Envelope
from infra.publishing import TopicLayout

Receipt = TypeVar("Receipt")

Recover = Callable[[Sequence[Any], Sequence[str]], Awaitable[None]]
"""Decodes and applies message bodies (with their origins) at once, outside the read loop."""

CatchUp = Callable[[int], Awaitable[int]]
"""Applies the event log after a position until caught up; returns the position reached."""


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """How a group member reads: which stream, as whom, in what batches, from where."""

    stream: str
    group: str
    # Stable across restarts of one process, so it finds its own unacknowledged entries.
    consumer: str
    batch_size: int = 500
    # Where a group that does not exist yet starts: the whole history, or only new messages.
    start: Literal["beginning", "end"] = "beginning"
    # Redis only: an entry pending this long (its consumer died) is claimed by a live one.
    claim_idle_ms: int = 60_000
    # Kafka only: the topic's layout if the consumer creates it, and the member's timings.
    layout: TopicLayout = field(default_factory=TopicLayout)
    session_timeout_ms: int = 10_000
    max_partition_fetch_bytes: int = 4 * 1024 * 1024


@dataclass(slots=True)
class Batch(Generic[Receipt]):
    """Messages as read: their bodies, where each came from (for logs), what acknowledges them."""

    bodies: list[Any]
    origins: list[str]
    # Broker-specific: the entry ids (Redis), the next offset of each partition (Kafka).
    receipt: Receipt


class GroupReader(Protocol[Receipt]):
    """A member of a consumer group: fetches batches, acknowledges those that are applied."""

    async def catch_up(self, read_log: CatchUp | None) -> None:
        """Before joining, read the event log if the stream lost what the group needs next.

        Trimmed past the group (a new group on a trimmed stream, say): note where the stream
        ends, apply the log with `read_log`, then move the group to the noted position.
        Without `read_log`, only say (WARNING) what the group misses.
        """
        ...

    async def connect(self, recover: Recover, stopping: asyncio.Event) -> None:
        """Join the group; what this member left unfinished goes through `recover`.

        `stopping` is set when the consumer stops: nothing waits for more batches then.
        """
        ...

    async def fetch(self) -> Batch[Receipt] | None:
        """The next batch; None when there was nothing to read for now."""
        ...

    async def acknowledge(self, receipt: Receipt) -> None:
        """Acknowledge a batch that is applied (its transaction committed)."""
        ...

    async def close(self) -> None:
        """Leave the group and close the connections."""
        ...


class EventSource(Protocol):
    """A complete history of events, oldest first, each user's events in order."""

    def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """The history in batches of at most `size`."""
        ...


class StreamHistory(EventSource, Protocol):
    """A broker's history read by position: where a replay stopped, it can go on from there."""

    def raw_pages(self, size: int, after: str = "") -> AsyncIterator[tuple[str, list[bytes]]]:
        """Entries after position `after` ("" = the first), up to the end when called.

        Each page holds the entries' data as sent (envelope JSON) and the position after
        its last entry: pass it as `after` to go on. The position is the broker's own (an
        entry id, offsets); nothing but this history should read it.
        """
        ...

    def resume_from(self, position: str) -> str:
        """Where a replay that stopped at `position` in an earlier process safely goes on."""
        ...
