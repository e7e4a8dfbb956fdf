"""Publishing to a Redis/Valkey Stream: one server-side XADD script call per batch."""

import logging
from collections.abc import Sequence

from faststream.redis import RedisBroker
from redis.commands.core import AsyncScript

from events.wire import BROKER_LOGGER, STREAM_FIELD, CloudEventJSONFormat
from producers.broker import PendingEvent

# One XADD per event, in the order given; an entry has the envelope in FastStream's data field.
_XADD_ALL = f"""
for i = 1, #ARGV do
    redis.call('XADD', KEYS[1], '*', '{STREAM_FIELD}', ARGV[i])
end
return #ARGV
"""


class RedisStreamPublisher:
    """XADDs each envelope to the stream through FastStream, one pipeline round trip a batch."""

    def __init__(self, url: str, stream: str) -> None:
        self.broker = RedisBroker(
            url,
            message_format=CloudEventJSONFormat,
            logger=logging.getLogger(BROKER_LOGGER),
            log_level=logging.DEBUG,
        )
        self._stream = stream
        self._xadd_all: AsyncScript | None = None

    async def connect(self) -> None:
        """Open the connection."""
        await self.broker.connect()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """XADD every event, in order, with one command; raises if the broker refused it.

        The entries are exactly what `broker.publish` with CloudEventJSONFormat writes, one per
        event. They are XADDed by a server-side script on FastStream's connection, one call a
        batch: per-message publishing (FastStream's command objects and middleware, then
        redis-py packing and parsing every command) cost the relay more than its database
        work (bench/relay.py). A failure part-way leaves the batch unconfirmed, so the relay
        publishes it again; consumers absorb the duplicates.
        """
        if self._xadd_all is None:
            client = await self.broker.connect()
            self._xadd_all = client.register_script(_XADD_ALL)
        await self._xadd_all(keys=[self._stream], args=[e.payload.encode() for e in events])

    async def close(self) -> None:
        """Close the connection."""
        await self.broker.stop()
