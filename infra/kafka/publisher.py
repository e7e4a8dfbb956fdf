"""Publishing to Kafka: keyed by user, idempotent, `acks=all`, CloudEvents headers."""

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from infra.kafka.admin import ensure_topic, topic_ends
from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from infra.publishing import PendingEvent, TopicLayout
from infra.witness import Observation, StreamLostError

CONTENT_TYPE = "application/cloudevents+json"
# The headers every event carries with the same value, encoded once.
_CONSTANT_HEADERS = (("content-type", CONTENT_TYPE.encode()), ("ce_specversion", b"1.0"))
# The largest record batch the relay builds by default (the broker's default limit is 1 MiB).
_MAX_BATCH_BYTES = 1024 * 1024
# How long a producer replaced after a loss may take to stop, and the longest wait for the
# acks of one publish (aiokafka's request timeout is 40 s).
_STOP_SECONDS = 5.0
_ACK_SECONDS = 120.0


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

    It is also the topic's witness (infra/witness.py): the broker acks each record batch
    with its offset, which only grows in a partition that keeps its records; an ack below
    one this publisher saw before it sent the batch means the topic was deleted and made
    again, and `publish` raises StreamLostError once the batch is acked.
    """

    def __init__(
        self,
        servers: list[str],
        topic: str,
        layout: TopicLayout,
        *,
        idempotent: bool = True,
        max_batch_bytes: int = _MAX_BATCH_BYTES,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._servers = servers
        self._security = security
        self._topic = topic
        self._layout = layout
        self._idempotent = idempotent
        self._max_batch_bytes = max_batch_bytes
        # Kafka's default: murmur2 of the key. Shared with the producer, so a keyed `send`
        # (and any other Kafka client) puts a user's events on the same partition.
        self._partitioner = DefaultPartitioner()
        self._producer: AIOKafkaProducer | None = None
        # Per partition, an offset known to hold a record since the last stamp (the listed
        # end then, the base offsets of acked batches since), and how many stamps so far.
        self._acked: dict[int, int] = {}
        self._stamps = 0

    async def connect(self) -> None:
        """Create the topic if it is missing, then start the producer."""
        await ensure_topic(self._servers, self._topic, self._layout, self._security)
        self._producer = await self._start_producer()

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **client_options(self._servers, self._security),
            enable_idempotence=self._idempotent,
            acks="all",
            partitioner=self._partitioner,
            max_batch_size=self._max_batch_bytes,
        )
        await producer.start()
        return producer

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Send every event, in order per user; raise unless the broker acked them all."""
        producer = self._producer
        assert producer is not None, "connect() first"
        partitions = sorted(await producer.partitions_for(self._topic))
        # Every batch acked before ours were sent has a lower offset in its partition, even
        # while another worker publishes through this producer at the same time.
        floor, stamps = dict(self._acked), self._stamps
        filled = self._fill_batches(producer, events, partitions)
        acks = [
            # A partition's batches are queued in the order they were filled, and aiokafka
            # sends one at a time per partition, so its events stay in order.
            await producer.send_batch(batch, self._topic, partition=partition)
            for partition, batch in filled
        ]
        # Bounded: a batch the broker never answers (a producer given up on) fails, and the
        # relay publishes it again.
        answers = await asyncio.wait_for(asyncio.gather(*acks), timeout=_ACK_SECONDS)
        if self._stamps != stamps:
            return  # the topic was marked afresh meanwhile: these acks prove nothing
        went_back = []
        for (partition, _), acked in zip(filled, answers, strict=True):
            if acked.offset <= floor.get(partition, -1):
                went_back.append(f"partition {partition}: {floor[partition]} -> {acked.offset}")
            self._acked[partition] = max(self._acked.get(partition, -1), acked.offset)
        if went_back:
            self._acked = {}
            raise StreamLostError(self._topic, "offsets went back (" + ", ".join(went_back) + ")")

    async def observe(self) -> Observation:
        """Whether the topic exists, each partition's listed end, and the ends acks proved.

        A partition's end is at least one past the base offset of its last acked batch; a
        broker that lists a stale end (Tansu) lists no less than that either. The listed
        ends also become offsets known to hold records, so that an ack below them later
        shows a loss even in a partition this publisher has not sent to since its stamp.
        """
        ends = await topic_ends(self._servers, self._topic, self._security)
        if ends is None:
            return Observation(marked=False)
        for partition, end in ends.items():
            if end > 0:
                self._acked[partition] = max(self._acked.get(partition, -1), end - 1)
        return Observation(
            True,
            {f"partition-{p}": end for p, end in sorted(ends.items())},
            {f"partition-{p}": offset + 1 for p, offset in sorted(self._acked.items())},
        )

    async def recreate(self) -> None:
        """Create the topic if it was deleted (a broker may take records for a missing one)."""
        await ensure_topic(self._servers, self._topic, self._layout, self._security)

    async def stamp(self) -> None:
        """Create the topic if it is missing; offsets are followed from its ends now.

        The producer is started again: one that knew the topic before it was deleted keeps
        failing on the new one (its metadata and batches in flight are the old topic's).
        """
        await ensure_topic(self._servers, self._topic, self._layout, self._security)
        ends = await topic_ends(self._servers, self._topic, self._security) or {}
        # A partition's records up to its listed end exist now: an ack below that later
        # means they were lost, also in a partition this publisher has not sent to yet.
        self._acked = {partition: end - 1 for partition, end in ends.items() if end > 0}
        self._stamps += 1
        old, self._producer = self._producer, await self._start_producer()
        if old is not None:
            # Batches stuck on the old topic are given up on (their events are still
            # queued): failed at once, so that publishing waiting on them goes on.
            old._message_accumulator.fail_all(StreamLostError(self._topic, "producer replaced"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), timeout=_STOP_SECONDS)

    def _fill_batches(
        self, producer: AIOKafkaProducer, events: Sequence[PendingEvent], partitions: list[int]
    ) -> list[tuple[int, BatchBuilder]]:
        """The events in closed aiokafka batches, with their partitions, in the order filled."""
        filled: list[tuple[int, BatchBuilder]] = []
        open_batches: dict[int, BatchBuilder] = {}
        for event in events:
            key = event.subject.encode()
            partition = self._partitioner(key, partitions, partitions)
            batch = open_batches.get(partition)
            if batch is None or not _append(batch, key, event):
                # Full (or none yet): a new batch. aiokafka always takes a batch's first
                # record, however large; should that change, fail rather than lose the event.
                batch = open_batches[partition] = producer.create_batch()
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
