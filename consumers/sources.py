"""Event histories to replay from: the auth service's event log (the broker's: infra/)."""

from collections.abc import AsyncIterator

from consumers.replay.sources import LogSource
from events import Envelope, envelope_from_json
from infra.event_log import PostgresEventLog
from infra.reading import EventSource

__all__ = ["EventSource", "OutboxLogSource"]


class OutboxLogSource(LogSource):
    """The auth service's outbox table (`auth.outbox`): every committed event, by position.

    A replay reads it by position with the commit-safe head of infra/event_log.py, so an
    event committed late with a smaller id is never skipped, and reads one user's events
    when it catches up with the live projection. It is also an EventSource (`batches`).
    """

    def __init__(self, database_url: str, *, schema: str = "auth") -> None:
        super().__init__(PostgresEventLog(database_url, schema=schema))

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """The whole log as it is now, in position order, validated."""
        try:
            async for page in self.pages("", size):
                yield [envelope_from_json(raw) for raw in page.raw]
        finally:
            await self.close()
