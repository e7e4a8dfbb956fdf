"""The broker behind one `publish`: FastStream to a Redis/Valkey Stream."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from faststream.redis import RedisBroker

from events.wire import BROKER_LOGGER, CloudEventJSONFormat
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

    async def connect(self) -> None:
        """Open the connection."""
        await self.broker.connect()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """XADD every event in one pipelined round trip; raises if any XADD failed."""
        client = await self.broker.connect()
        # transaction=False: a MULTI would add nothing (each XADD stands alone, and a
        # republished duplicate is absorbed by consumers) and cost a round trip.
        async with client.pipeline(transaction=False) as pipe:
            for event in events:
                await self.broker.publish(
                    event.payload.encode(), stream=self._stream, pipeline=pipe
                )
            await pipe.execute(raise_on_error=True)

    async def close(self) -> None:
        """Close the connection."""
        await self.broker.stop()


def make_publisher(settings: RelaySettings) -> EventPublisher:
    """The publisher for the configured broker URL."""
    return RedisStreamPublisher(settings.broker_url, settings.stream)
