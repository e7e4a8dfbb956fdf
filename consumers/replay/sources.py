"""What a replay reads: the event log (PostgreSQL or the HTTP feed), a broker's history, a list.

Every source reads by position, a string only the source understands ("" is the start):
`pages(after)` gives everything after it up to the current end, and can be called again
with the last page's position to get what came since (a replay's catch-up). The position
after each committed batch is the replay's checkpoint.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

from events import Envelope
from infra.event_log import EventLog
from infra.reading import EventSource, StreamHistory


@dataclass(frozen=True, slots=True)
class SourcePage:
    """Events in source order, and where the next page starts."""

    # The envelopes as JSON, as the source holds them, or already parsed (a list source).
    raw: Sequence[str | bytes]
    parsed: Sequence[Envelope] | None
    position: str
    # How far the page moves the replay's progress, in the unit of `ReplaySource.total`.
    advanced: int


@runtime_checkable
class ReplaySource(Protocol):
    """A complete history of events in order (each user's in sequence order), by position."""

    kind: str
    """Recorded with the checkpoint: a replay resumes only from a source of the same kind."""

    async def total(self) -> int | None:
        """Where the end is now, in progress units from the start ("" = 0); None: unknown."""
        ...

    def progress_at(self, position: str, events: int) -> int:
        """The progress a replay that stopped at `position` after `events` events had made."""
        ...

    def resume_from(self, position: str) -> str:
        """Where a replay interrupted at `position` (in another process) safely goes on."""
        ...

    def pages(self, after: str, size: int) -> AsyncIterator[SourcePage]:
        """Events after `after` up to the end as it is now, at most `size` a page."""
        ...

    async def events_of(self, user_id: UUID, after_sequence: int) -> list[Envelope] | None:
        """One user's events with sequence > `after_sequence`; None if this source cannot."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class LogSource:
    """The event log by position (the outbox id): `PostgresEventLog`, or the feed's client.

    `page_limit` is the most one request may ask for (the feed serves pages of up to
    1,000): a replay's page of `size` events is then gathered from several requests.
    """

    def __init__(self, log: EventLog, kind: str = "log", *, page_limit: int | None = None) -> None:
        self.kind = kind
        self._log = log
        self._page_limit = page_limit

    @property
    def log(self) -> EventLog:
        """The event log read."""
        return self._log

    async def total(self) -> int:
        """The log's commit-safe head: positions are outbox ids, about one per event."""
        return await self._log.head()

    def progress_at(self, position: str, events: int) -> int:
        """The position itself."""
        return int(position or 0)

    def resume_from(self, position: str) -> str:
        """The position itself: the log never skips an event committed late."""
        return position

    async def pages(self, after: str, size: int) -> AsyncIterator[SourcePage]:
        """Pages of the log until it is caught up with its commit-safe head."""
        start = int(after or 0)
        while True:
            rows, position, caught_up = await self._gather(start, size)
            if rows or position != start:
                yield SourcePage(rows, None, str(position), position - start)
            if caught_up:
                return
            start = position

    async def _gather(self, start: int, size: int) -> tuple[list[str], int, bool]:
        rows: list[str] = []
        position = start
        while True:
            limit = min(size - len(rows), self._page_limit or size)
            page = await self._log.page(position, limit)
            rows.extend(payload for _, payload in page.rows)
            position = page.next
            if page.caught_up or len(rows) >= size:
                return rows, position, page.caught_up

    async def events_of(self, user_id: UUID, after_sequence: int) -> list[Envelope]:
        """From the log."""
        return await self._log.events_of(user_id, after_sequence)

    async def close(self) -> None:
        """Close the log's connections."""
        await self._log.close()


class StreamSource:
    """A broker's stream or topic history; the length comes from the broker's status."""

    kind = "stream"

    def __init__(self, history: StreamHistory, length: int | None = None) -> None:
        self._history = history
        self._length = length

    async def total(self) -> int | None:
        """The stream's length when the replay began (its entries, duplicates included)."""
        return self._length

    def progress_at(self, position: str, events: int) -> int:
        """The entries read so far."""
        return events

    def resume_from(self, position: str) -> str:
        """As the broker's history says (a Redis id resumes; a Kafka replay starts over)."""
        return self._history.resume_from(position)

    async def pages(self, after: str, size: int) -> AsyncIterator[SourcePage]:
        """The broker's pages, raw."""
        async for position, raw in self._history.raw_pages(size, after):
            yield SourcePage(raw, None, position, len(raw))

    async def events_of(self, user_id: UUID, after_sequence: int) -> None:
        """A stream cannot be read by user: the replay reads it to its end instead."""
        return None

    async def close(self) -> None:
        """Each read closes its own client."""


class ListedSource:
    """Any EventSource (the envelopes in order, in batches): a position counts the events."""

    kind = "list"

    def __init__(self, source: EventSource) -> None:
        self._source = source

    async def total(self) -> None:
        """Unknown."""
        return None

    def progress_at(self, position: str, events: int) -> int:
        """The events read so far."""
        return events

    def resume_from(self, position: str) -> str:
        """The count itself: a history only grows at its end."""
        return position

    async def pages(self, after: str, size: int) -> AsyncIterator[SourcePage]:
        """The source's batches from the start, the first `after` events left out."""
        skip = int(after or 0)
        read = 0
        async for batch in self._source.batches(size):
            fresh = batch[max(0, skip - read) :]
            read += len(batch)
            if fresh:
                yield SourcePage((), fresh, str(read), len(fresh))

    async def events_of(self, user_id: UUID, after_sequence: int) -> None:
        """Not by user."""
        return None

    async def close(self) -> None:
        """Nothing to release."""


def as_replay_source(source: ReplaySource | EventSource) -> ReplaySource:
    """A ReplaySource as it is; any other EventSource read through ListedSource."""
    if isinstance(source, ReplaySource):
        return source
    return ListedSource(source)
