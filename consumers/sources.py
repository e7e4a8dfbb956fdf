"""Event histories to replay from: the auth service's event log, or the stream itself."""

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from events import Envelope, MalformedEventError, envelope_from_json
from events.wire import STREAM_FIELD

logger = logging.getLogger(__name__)


class EventSource(Protocol):
    """A complete history of events, oldest first, each user's events in order."""

    def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """The history in batches of at most `size`."""
        ...


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


class RedisStreamSource:
    """A Redis Stream read with XRANGE from its first entry (duplicates included)."""

    def __init__(self, url: str, stream: str) -> None:
        self._url = url
        self._stream = stream

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Page through the stream; entries that are not envelopes are logged and skipped."""
        client = redis.Redis.from_url(self._url)
        try:
            start = "-"
            while entries := await _xrange(client, self._stream, start, size):
                batch = []
                for entry_id, fields in entries:
                    try:
                        batch.append(envelope_from_json(fields.get(STREAM_FIELD.encode(), b"")))
                    except MalformedEventError as exc:
                        logger.warning("replay: skipping stream entry %s: %s", entry_id, exc)
                yield batch
                start = "(" + entries[-1][0].decode()
        finally:
            await client.aclose()


async def _xrange(client: "redis.Redis", stream: str, start: str, count: int) -> list[Any]:
    entries: Any = await client.xrange(stream, min=start, count=count)
    return list(entries or [])
