"""A Redis Stream as an event history, for a replay: XRANGE from its first entry or an id."""

import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from events import Envelope, MalformedEventError, envelope_from_json
from infra.redis.wire import DATA, entry_pages

logger = logging.getLogger(__name__)


class RedisStreamSource:
    """A Redis Stream read with XRANGE from its first entry (duplicates included).

    A position is an entry id. Ids only grow: the server gives each new entry one above
    both the last id and its clock, also in a stream created anew after a restart that lost
    the old one. So going on after an id read before never skips an entry added since.
    """

    def __init__(self, url: str, stream: str) -> None:
        self._url = url
        self._stream = stream

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """Page through the stream; entries that are not envelopes are logged and skipped."""
        async for _, raw in self.raw_pages(size):
            batch = []
            for data in raw:
                try:
                    batch.append(envelope_from_json(data))
                except MalformedEventError as exc:
                    logger.warning("replay: skipping a stream entry: %s", exc)
            yield batch

    async def raw_pages(self, size: int, after: str = "") -> AsyncIterator[tuple[str, list[bytes]]]:
        """The entries' data after entry id `after`, and the id of each page's last entry."""
        client = Redis.from_url(self._url)
        try:
            async for entries in entry_pages(client, self._stream, size, after):
                yield entries[-1][0].decode(), [fields.get(DATA, b"") for _, fields in entries]
        finally:
            await client.aclose()

    def resume_from(self, position: str) -> str:
        """The id itself: ids only grow (see the class)."""
        return position
