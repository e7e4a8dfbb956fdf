"""A projection following a Kafka topic as a consumer group."""

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.base import ProjectionConsumer
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events.brokers import ensure_topic, kafka_servers

logger = logging.getLogger(__name__)

# How long one fetch waits for records before the reader looks again.
_FETCH_TIMEOUT_MS = 1000


class KafkaTopicConsumer(ProjectionConsumer):
    """Reads the topic in batches; the projection's name is the Kafka consumer group.

    Offsets are committed only after the batch's transaction has committed (never on
    receipt, which would be at-most-once). A crash leaves the offsets where they were, so
    the batch comes again; partitions spread over the processes of one group, and each
    user's events stay in their partition, in order.

    When the group rebalances, the partitions are given up only once every batch already
    read is applied and its offsets committed; what arrives meanwhile is dropped and read
    again by the partition's next owner, from the committed offsets.
    """

    def __init__(
        self, settings: ConsumerSettings, projection: Projection, engine: AsyncEngine | None
    ) -> None:
        super().__init__(settings, projection, engine)
        self._servers = kafka_servers(settings.broker_url)
        self._consumer: AIOKafkaConsumer | None = None
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

    async def _connect(self) -> None:
        await ensure_topic(
            self._servers,
            self.settings.stream,
            self.settings.kafka_partitions,
            self.settings.kafka_replication_factor,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            group_id=self.group,
            enable_auto_commit=False,
            # Where a group with no committed offsets starts: the whole history by default.
            auto_offset_reset="earliest"
            if self.settings.consumer_start == "beginning"
            else "latest",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_session_timeout_ms // 3,
            max_partition_fetch_bytes=self.settings.kafka_max_partition_fetch_bytes,
        )
        self._consumer.subscribe([self.settings.stream], listener=_Handover(self))
        await self._consumer.start()

    async def _disconnect(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _fetch(self) -> tuple[list[Any], list[str], Any] | None:
        records = await self.consumer.getmany(
            timeout_ms=_FETCH_TIMEOUT_MS, max_records=self.settings.consumer_batch_size
        )
        if not records or self._revoking:
            return None
        bodies: list[Any] = []
        origins: list[str] = []
        offsets: dict[TopicPartition, int] = {}
        for partition, batch in records.items():
            for record in batch:
                bodies.append(record.value)
                origins.append(f"{partition.topic}:{partition.partition}:{record.offset}")
            offsets[partition] = batch[-1].offset + 1
        self._unsettled += 1  # before any await: a rebalance starting now waits for it
        return bodies, origins, offsets

    async def _acknowledge(self, receipt: Any) -> None:
        try:
            await self.consumer.commit(receipt)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved the partitions on: their next owner reads from the last
            # commit, and the tracking records absorb what this member already applied.
            logger.warning("%s: offsets not committed (%r); they come again", self.group, exc)
        async with self._settled:
            self._unsettled -= 1
            self._settled.notify_all()

    async def hand_over(self) -> None:
        """Before partitions leave this member: finish and commit every batch already read."""
        self._revoking = True
        async with self._settled:
            await self._settled.wait_for(lambda: self._unsettled <= 0 or self._stopping.is_set())

    def take_over(self) -> None:
        """Partitions were assigned: reading goes on, from the committed offsets."""
        self._revoking = False


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: KafkaTopicConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._member.hand_over()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._member.take_over()
