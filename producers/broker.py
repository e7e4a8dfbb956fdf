"""The broker behind one `publish`: FastStream to a Redis/Valkey Stream."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from faststream.redis import RedisBroker
from redis.commands.core import AsyncScript

from events.wire import BROKER_LOGGER, STREAM_FIELD, CloudEventJSONFormat
from producers.settings import RelaySettings


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An outbox row to publish: its envelope as JSON, and the user it belongs to."""

    outbox_id: int
    subject: UUID
    payload: str


class EventPublisher(Protocol):
    """Publishes events in the given order; returns only once the broker has accepted all."""

    async def connect(self) -> None:
        """Open the broker connection."""
        ...

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Publish, in order; raises if the broker did not accept every event."""
        ...

    async def close(self) -> None:
        """Close the broker connection."""
        ...


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


def make_publisher(settings: RelaySettings) -> EventPublisher:
    """The publisher for the configured broker URL."""
    return RedisStreamPublisher(settings.broker_url, settings.stream)
