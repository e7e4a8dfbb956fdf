"""A member of a Kafka consumer group: offsets committed after the apply, careful hand-overs."""

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from infra.kafka.admin import ensure_topic
from infra.kafka.catch_up import beginning_offsets, catch_up_group
from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from infra.reading import Batch, CatchUp, ReaderOptions, Recover

logger = logging.getLogger(__name__)

# How long one fetch waits for records before the reader looks again.
_FETCH_TIMEOUT_MS = 1000

Offsets = dict[TopicPartition, int]


class KafkaGroupReader:
    """Reads the topic in batches as a member of the Kafka consumer group `options.group`.

    Offsets are committed only after the batch's transaction has committed (never on
    receipt, which would be at-most-once). A crash leaves the offsets where they were, so
    the batch comes again; partitions spread over the processes of one group, and each
    user's events stay in their partition, in order.

    When the group rebalances, the partitions are given up only once every batch already
    read is applied and its offsets committed; what arrives meanwhile is dropped and read
    again by the partition's next owner, from the committed offsets.
    """

    def __init__(
        self, servers: list[str], options: ReaderOptions, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self._servers = servers
        self._security = security
        self._options = options
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        # Batches read but not yet committed, and whether a rebalance is taking partitions.
        self._unsettled = 0
        self._settled = asyncio.Condition()
        self._revoking = False

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The group member, once connected."""
        if self._consumer is None:
            raise RuntimeError("the consumer is not connected")
        return self._consumer

    async def catch_up(self, read_log: CatchUp | None) -> None:
        """Read the event log first if the group would start after deleted records."""
        await catch_up_group(self._servers, self._options, read_log, self._earliest, self._security)

    async def _earliest(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> Offsets:
        return await beginning_offsets(consumer, partitions)

    async def connect(self, recover: Recover, stopping: asyncio.Event) -> None:
        """Create the topic if it is missing, then join the group (nothing to recover here).

        A crashed member's batches need no recovery: their offsets were not committed, so
        the group delivers them again.
        """
        options = self._options
        self._stopping = stopping
        await ensure_topic(self._servers, options.stream, options.layout, self._security)
        self._consumer = AIOKafkaConsumer(
            **client_options(self._servers, self._security),
            group_id=options.group,
            enable_auto_commit=False,
            # Where a group with no committed offsets starts: the whole history by default.
            auto_offset_reset="earliest" if options.start == "beginning" else "latest",
            session_timeout_ms=options.session_timeout_ms,
            heartbeat_interval_ms=options.session_timeout_ms // 3,
            max_partition_fetch_bytes=options.max_partition_fetch_bytes,
        )
        self._consumer.subscribe([options.stream], listener=_Handover(self))
        await self._consumer.start()

    async def close(self) -> None:
        """Leave the group."""
        if self._consumer is not None:
            await self._consumer.stop()

    async def fetch(self) -> Batch[Offsets] | None:
        """The records fetched from the assigned partitions; None if none, or mid-rebalance."""
        records = await self.consumer.getmany(
            timeout_ms=_FETCH_TIMEOUT_MS, max_records=self._options.batch_size
        )
        if not records or self._revoking:
            return None
        bodies: list[Any] = []
        origins: list[str] = []
        offsets: Offsets = {}
        for partition, batch in records.items():
            for record in batch:
                bodies.append(record.value)
                origins.append(f"{partition.topic}:{partition.partition}:{record.offset}")
            offsets[partition] = batch[-1].offset + 1
        self._unsettled += 1  # before any await: a rebalance starting now waits for it
        return Batch(bodies, origins, offsets)

    async def acknowledge(self, receipt: Offsets) -> None:
        """Commit the batch's offsets; a rebalance waiting for this batch may then go on."""
        await self.commit(receipt)
        async with self._settled:
            self._unsettled -= 1
            self._settled.notify_all()

    async def commit(self, offsets: Offsets) -> None:
        """Commit offsets of the group's partitions, unless the group moved them on."""
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved the partitions on: their next owner reads from the last
            # commit, and the tracking records absorb what this member already applied.
            logger.warning(
                "%s: offsets not committed (%r); they come again", self._options.group, exc
            )

    async def hand_over(self) -> None:
        """Before partitions leave this member: finish and commit every batch already read."""
        self._revoking = True
        async with self._settled:
            await self._settled.wait_for(lambda: self._unsettled <= 0 or self._stopping.is_set())

    def take_over(self) -> None:
        """Partitions were assigned: reading goes on, from the committed offsets."""
        self._revoking = False


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: KafkaGroupReader) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._member.hand_over()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._member.take_over()
