"""Publishing to Kafka: keyed by user, idempotent, `acks=all`, CloudEvents headers."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from events.brokers import ensure_topic
from events.wire import CONTENT_TYPE
from producers.broker import PendingEvent

# The headers every event carries with the same value, encoded once.
_CONSTANT_HEADERS = [("content-type", CONTENT_TYPE.encode()), ("ce_specversion", b"1.0")]


class KafkaPublisher:
    """Sends each envelope to the topic, keyed by user id, and waits for every broker ack.

    The key puts all of one user's events on one partition, in order. The idempotent
    producer (with `acks=all`) keeps retries from duplicating or reordering them; the relay
    marks events published only after `publish` returns.

    The relay drives aiokafka's producer itself rather than FastStream's per-message
    `publish`: the envelopes are already serialised, and FastStream's command objects,
    correlation ids and middleware cost more per event than the send (bench/kafka_relay.py).
    Consumers read the topic through FastStream as usual.
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
        self._servers = servers
        self._topic = topic
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._idempotent = idempotent
        self._producer: AIOKafkaProducer | None = None

    async def connect(self) -> None:
        """Create the topic if it is missing, then start the producer."""
        await ensure_topic(self._servers, self._topic, self._partitions, self._replication_factor)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            enable_idempotence=self._idempotent,
            acks="all",
            # Batches fill while the relay hands over a whole outbox batch at once.
            linger_ms=5,
            max_batch_size=1024 * 1024,
        )
        await self._producer.start()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Send every event, in order per user; raise unless the broker acked them all."""
        assert self._producer is not None, "connect() first"
        send = self._producer.send
        acks = [
            await send(
                self._topic,
                event.payload.encode(),
                key=str(event.subject).encode(),
                headers=cloudevent_headers(event),
            )
            for event in events
        ]
        await asyncio.gather(*acks)

    async def close(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def cloudevent_headers(event: PendingEvent) -> list[tuple[str, bytes]]:
    """The CloudEvents Kafka binding's `ce_` headers, beside the structured JSON value.

    A reader can route or filter on them without parsing the value.
    """
    headers: list[tuple[str, bytes]] = [
        *_CONSTANT_HEADERS,
        ("ce_id", str(event.event_id).encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_subject", str(event.subject).encode()),
        ("ce_time", event.time.isoformat().encode()),
        ("ce_sequence", str(event.sequence).encode()),
    ]
    return headers
