"""A Redis Stream as an event history, for a replay: XRANGE from its first entry."""

import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from events import Envelope, MalformedEventError, envelope_from_json
from infra.redis.wire import DATA, entry_pages

logger = logging.getLogger(__name__)


class RedisStreamSource:
    """A Redis Stream read with XRANGE from its first entry (duplicates included)."""

    def __init__(self, url: str, stream: str) -> None:
        self._url = url
        self._stream = stream

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Page through the stream; entries that are not envelopes are logged and skipped."""
        client = Redis.from_url(self._url)
        try:
            async for entries in entry_pages(client, self._stream, size):
                batch = []
                for entry_id, fields in entries:
                    try:
                        batch.append(envelope_from_json(fields.get(DATA, b"")))
                    except MalformedEventError as exc:
                        logger.warning("replay: skipping stream entry %s: %s", entry_id, exc)
                yield batch
        finally:
            await client.aclose()
