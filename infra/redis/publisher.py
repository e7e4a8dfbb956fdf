"""Publishing to a Redis/Valkey Stream: one script call per batch, trimmed as it goes."""

import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from infra.publishing import PendingEvent, Retention
from infra.redis.wire import STREAM_FIELD
from infra.witness import Observation, StreamLostError

# The relay's mark on a stream: a consumer group nobody reads. It lives and dies with the
# stream's key, so a Valkey restarted without its data, or a deleted stream, has lost it.
MARKER_GROUP = "userbus.relay"

_LOST = "USERBUS_LOST"

# KEYS[1] the stream. ARGV[1] the group that must exist ('' for none): published only into a
# stream that still holds its mark. ARGV[2] MINID and ARGV[3] MAXLEN of the trim ('' for none).
# ARGV[4..] the envelopes, XADDed in order into the data field.
_XADD_ALL = f"""
if ARGV[1] ~= '' then
    local found = redis.pcall('XPENDING', KEYS[1], ARGV[1])
    if type(found) == 'table' and found['err'] then
        return redis.error_reply('{_LOST} ' .. found['err'])
    end
end
for i = 4, #ARGV do
    redis.call('XADD', KEYS[1], '*', '{STREAM_FIELD}', ARGV[i])
end
if ARGV[2] ~= '' then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[2])
end
if ARGV[3] ~= '' then
    redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3])
end
return #ARGV - 3
"""


class RedisStreamPublisher:
    """XADDs each envelope to the stream with redis-py, one script call (round trip) a batch.

    It is also the stream's witness (infra/witness.py): once `stamp` has marked the stream,
    a batch is published only while the mark is there, so nothing lands in a stream that
    lost its data before the relay has queued the whole log again.
    """

    def __init__(self, url: str, stream: str, retention: Retention | None = None) -> None:
        self._url = url
        self._stream = stream
        self._retention = retention or Retention()
        self._client: Redis | None = None
        self._xadd_all: AsyncScript | None = None
        self._guarded = False

    @property
    def client(self) -> Redis:
        """The connection pool, opened on first use."""
        if self._client is None:
            self._client = Redis.from_url(self._url)
            self._xadd_all = self._client.register_script(_XADD_ALL)
        return self._client

    async def connect(self) -> None:
        """Open the connection pool (connections are made on first use, and again if lost)."""
        _ = self.client

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """XADD every event, in order, with one command; raises if the broker refused it.

        The entries are one per event, the envelope in the data field (see wire.py). They are
        XADDed by a server-side script, one call a batch: publishing per message (a command
        object each, redis-py packing and parsing every command) cost the relay more than its
        database work (bench/relay.py). The same call trims the stream to its retention,
        approximately (`~`: whole nodes only, which costs next to nothing). A failure part-way
        leaves the batch unconfirmed, so the relay publishes it again; consumers absorb the
        duplicates. StreamLostError if the stream lost its mark (nothing is published then).
        """
        _ = self.client
        assert self._xadd_all is not None
        retention = self._retention
        trim_before = (
            f"{int(time.time() * 1000) - retention.max_age_ms}-0"
            if retention.max_age_ms is not None
            else ""
        )
        args: list[Any] = [
            MARKER_GROUP if self._guarded else "",
            trim_before,
            "" if retention.max_length is None else str(retention.max_length),
        ]
        args += [e.payload.encode() for e in events]
        try:
            await self._xadd_all(keys=[self._stream], args=args)
        except ResponseError as exc:
            if str(exc).startswith(_LOST):
                raise StreamLostError(self._stream, "its relay marker is gone") from exc
            raise

    async def observe(self) -> Observation:
        """Whether the stream holds the relay's mark, and how many entries it ever had added."""
        try:
            info: Any = await self.client.xinfo_stream(self._stream)
            groups: Any = await self.client.xinfo_groups(self._stream)
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            return Observation(marked=False)
        names = {_text(group["name"]) for group in groups}
        return Observation(MARKER_GROUP in names, {"entries-added": int(info["entries-added"])})

    async def recreate(self) -> None:
        """Nothing to do: publishing waits for the mark, which `stamp` gives."""

    async def stamp(self) -> None:
        """Mark the stream (creating it if needed); publishing then requires the mark."""
        try:
            await self.client.xgroup_create(self._stream, MARKER_GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._guarded = True

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._xadd_all = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
