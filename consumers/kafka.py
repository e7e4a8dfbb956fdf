"""A projection following a Kafka topic as a consumer group."""

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.base import ProjectionConsumer
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events.brokers import ensure_topic, kafka_servers
from events.wire import BROKER_LOGGER


class KafkaTopicConsumer(ProjectionConsumer):
    """Reads the topic in batches; the projection's name is the Kafka consumer group.

    Offsets are committed only after the batch's transaction has committed: FastStream's
    Kafka default (ack first, auto-commit) would be at-most-once. A failure or a crash
    leaves the offset where it was, so the batch comes again; partitions spread over the
    processes of one group, and each user's events stay in their partition, in order.
    """

    def __init__(
        self, settings: ConsumerSettings, projection: Projection, engine: AsyncEngine | None
    ) -> None:
        super().__init__(settings, projection, engine)
        self._servers = kafka_servers(settings.broker_url)
        self.broker = KafkaBroker(
            self._servers,
            logger=logging.getLogger(BROKER_LOGGER),
            log_level=logging.DEBUG,
        )
        self.broker.subscriber(
            settings.stream,
            group_id=self.group,
            batch=True,
            max_records=settings.consumer_batch_size,
            batch_timeout_ms=100,
            # Where a group with no committed offsets starts: the whole history by default.
            auto_offset_reset="earliest" if settings.consumer_start == "beginning" else "latest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_session_timeout_ms // 3,
        )(self.on_batch)

    async def _start_consuming(self) -> None:
        await ensure_topic(
            self._servers,
            self.settings.stream,
            self.settings.kafka_partitions,
            self.settings.kafka_replication_factor,
        )
        await self.broker.start()

    async def _stop_consuming(self) -> None:
        await self.broker.stop()
