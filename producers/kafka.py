"""Publishing to Kafka: keyed by user, idempotent, `acks=all`, CloudEvents headers."""

import asyncio
import logging
from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from events.brokers import ensure_topic
from events.wire import BROKER_LOGGER, CONTENT_TYPE
from producers.broker import PendingEvent


class KafkaPublisher:
    """Sends each envelope to the topic, keyed by user id, and waits for every broker ack.

    The key puts all of one user's events on one partition, in order. The idempotent
    producer (which implies `acks=all`) keeps retries from duplicating or reordering them;
    the relay marks events published only after `publish` returns.
    """

    def __init__(
        self,
        servers: list[str],
        topic: str,
        *,
        partitions: int,
        replication_factor: int,
        idempotent: bool = True,
    ) -> None:
        self.broker = KafkaBroker(
            servers,
            enable_idempotence=idempotent,
            acks="all",
            # Batches fill while the relay hands over a whole outbox batch at once.
            linger_ms=5,
            max_batch_size=1024 * 1024,
            logger=logging.getLogger(BROKER_LOGGER),
            log_level=logging.DEBUG,
        )
        self._servers = servers
        self._topic = topic
        self._partitions = partitions
        self._replication_factor = replication_factor

    async def connect(self) -> None:
        """Create the topic if it is missing, then connect the producer."""
        await ensure_topic(self._servers, self._topic, self._partitions, self._replication_factor)
        await self.broker.connect()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Send every event, in order per user; raise unless the broker acked them all."""
        acks = [
            await self.broker.publish(
                event.payload.encode(),
                self._topic,
                key=str(event.subject).encode(),
                headers=cloudevent_headers(event),
                no_confirm=True,
            )
            for event in events
        ]
        await asyncio.gather(*acks)

    async def close(self) -> None:
        """Flush and close the producer."""
        await self.broker.stop()


def cloudevent_headers(event: PendingEvent) -> dict[str, str]:
    """The CloudEvents Kafka binding's `ce_` headers, beside the structured JSON value.

    A reader can route or filter on them without parsing the value.
    """
    return {
        "content-type": CONTENT_TYPE,
        "ce_specversion": "1.0",
        "ce_id": str(event.event_id),
        "ce_source": event.source,
        "ce_type": event.type,
        "ce_subject": str(event.subject),
        "ce_time": event.time.isoformat(),
        "ce_sequence": str(event.sequence),
    }
