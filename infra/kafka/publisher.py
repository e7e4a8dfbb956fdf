"""Publishing to Kafka: keyed by user, idempotent, `acks=all`, CloudEvents headers."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from infra.kafka.admin import ensure_topic
from infra.publishing import PendingEvent, TopicLayout

CONTENT_TYPE = "application/cloudevents+json"
# The headers every event carries with the same value, encoded once.
_CONSTANT_HEADERS = (("content-type", CONTENT_TYPE.encode()), ("ce_specversion", b"1.0"))
# The largest record batch the relay builds by default (the broker's default limit is 1 MiB).
_MAX_BATCH_BYTES = 1024 * 1024


class KafkaPublisher:
    """Sends each envelope to the topic, keyed by user id, and waits for every broker ack.

    The key puts all of one user's events on one partition, in order. The idempotent
    producer (with `acks=all`) keeps retries from duplicating or reordering them; the relay
    marks events published only after `publish` returns.

    The relay fills aiokafka's batches itself, one per partition, rather than calling `send`
    per event: the envelopes are already serialised, and a `send` per event (its metadata
    and partition lookups, a future and its callback) took a large share of the relay's CPU
    (bench/README.md). The partition is the one `send` would pick for the key, and the
    idempotent producer numbers these batches as it numbers its own (when they are sent).
    """

    def __init__(
        self,
        servers: list[str],
        topic: str,
        layout: TopicLayout,
        *,
        idempotent: bool = True,
        max_batch_bytes: int = _MAX_BATCH_BYTES,
    ) -> None:
        self._servers = servers
        self._topic = topic
        self._layout = layout
        self._idempotent = idempotent
        self._max_batch_bytes = max_batch_bytes
        # Kafka's default: murmur2 of the key. Shared with the producer, so a keyed `send`
        # (and any other Kafka client) puts a user's events on the same partition.
        self._partitioner = DefaultPartitioner()
        self._producer: AIOKafkaProducer | None = None

    async def connect(self) -> None:
        """Create the topic if it is missing, then start the producer."""
        await ensure_topic(self._servers, self._topic, self._layout)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            enable_idempotence=self._idempotent,
            acks="all",
            partitioner=self._partitioner,
            max_batch_size=self._max_batch_bytes,
        )
        await self._producer.start()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Send every event, in order per user; raise unless the broker acked them all."""
        assert self._producer is not None, "connect() first"
        partitions = sorted(await self._producer.partitions_for(self._topic))
        acks = [
            # A partition's batches are queued in the order they were filled, and aiokafka
            # sends one at a time per partition, so its events stay in order.
            await self._producer.send_batch(batch, self._topic, partition=partition)
            for partition, batch in self._fill_batches(events, partitions)
        ]
        await asyncio.gather(*acks)

    def _fill_batches(
        self, events: Sequence[PendingEvent], partitions: list[int]
    ) -> list[tuple[int, BatchBuilder]]:
        """The events in closed aiokafka batches, with their partitions, in the order filled."""
        assert self._producer is not None, "connect() first"
        filled: list[tuple[int, BatchBuilder]] = []
        open_batches: dict[int, BatchBuilder] = {}
        for event in events:
            key = event.subject.encode()
            partition = self._partitioner(key, partitions, partitions)
            batch = open_batches.get(partition)
            if batch is None or not _append(batch, key, event):
                # Full (or none yet): a new batch. aiokafka always takes a batch's first
                # record, however large; should that change, fail rather than lose the event.
                batch = open_batches[partition] = self._producer.create_batch()
                filled.append((partition, batch))
                if not _append(batch, key, event):
                    raise RuntimeError(f"event {event.event_id} refused by an empty batch")
        for _, batch in filled:
            # Closed, the sender takes it at once instead of lingering for more records.
            batch.close()
        return filled

    async def close(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _append(batch: BatchBuilder, key: bytes, event: PendingEvent) -> bool:
    """Add the event to an aiokafka batch; False if the batch is full."""
    metadata = batch.append(
        key=key, value=event.payload.encode(), timestamp=None, headers=cloudevent_headers(event)
    )
    return metadata is not None


def cloudevent_headers(event: PendingEvent) -> list[tuple[str, bytes]]:
    """The CloudEvents Kafka binding's `ce_` headers, beside the structured JSON value.

    A reader can route or filter on them without parsing the value.
    """
    return [
        *_CONSTANT_HEADERS,
        ("ce_id", event.event_id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_time", event.time.encode()),
        ("ce_sequence", event.sequence.encode()),
    ]
