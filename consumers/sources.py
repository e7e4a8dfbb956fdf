"""Event histories to replay from: the auth service's event log (the broker's: infra/)."""

from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from events import Envelope, envelope_from_json
from infra.reading import EventSource

__all__ = ["EventSource", "OutboxLogSource"]


class OutboxLogSource:
    """The auth service's outbox table: every committed event, published or not.

    Ordered by id: one user's events are committed one after another (each change locks the
    user's row), so id order is each user's sequence order.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Read the log in id order with a server-side cursor."""
        engine = create_async_engine(self._url)
        try:
            async with engine.connect() as conn:
                result = await conn.stream(
                    text("SELECT payload::text FROM auth.outbox ORDER BY id"),
                    execution_options={"yield_per": size},
                )
                async for rows in result.partitions(size):
                    yield [envelope_from_json(row[0]) for row in rows]
        finally:
            await engine.dispose()
