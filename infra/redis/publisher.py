"""Publishing to a Redis/Valkey Stream: one server-side XADD script call per batch."""

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from infra.publishing import PendingEvent
from infra.redis.wire import STREAM_FIELD

# One XADD per event, in the order given; an entry has the envelope in the data field.
_XADD_ALL = f"""
for i = 1, #ARGV do
    redis.call('XADD', KEYS[1], '*', '{STREAM_FIELD}', ARGV[i])
end
return #ARGV
"""


class RedisStreamPublisher:
    """XADDs each envelope to the stream with redis-py, one script call (round trip) a batch."""

    def __init__(self, url: str, stream: str) -> None:
        self._url = url
        self._stream = stream
        self._client: Redis | None = None
        self._xadd_all: AsyncScript | None = None

    async def connect(self) -> None:
        """Open the connection pool (connections are made on first use, and again if lost)."""
        if self._client is None:
            self._client = Redis.from_url(self._url)
            self._xadd_all = self._client.register_script(_XADD_ALL)

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """XADD every event, in order, with one command; raises if the broker refused it.

        The entries are one per event, the envelope in the data field (see wire.py). They are
        XADDed by a server-side script, one call a batch: publishing per message (a command
        object each, redis-py packing and parsing every command) cost the relay more than its
        database work (bench/relay.py). A failure part-way leaves the batch unconfirmed, so
        the relay publishes it again; consumers absorb the duplicates.
        """
        if self._xadd_all is None:
            await self.connect()
        assert self._xadd_all is not None
        await self._xadd_all(keys=[self._stream], args=[e.payload.encode() for e in events])

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._xadd_all = None
