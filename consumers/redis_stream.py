"""A projection following a Redis/Valkey Stream as a consumer group."""

import asyncio
import contextlib
import logging
from typing import Any

from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.base import ProjectionConsumer
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events.wire import BROKER_LOGGER, STREAM_FIELD, CloudEventJSONFormat

logger = logging.getLogger(__name__)


class RedisStreamConsumer(ProjectionConsumer):
    """Reads the stream in batches as a member of the projection's consumer group.

    At start it first re-applies the entries it had received but not acknowledged before
    it stopped (a crash mid-batch), then follows new ones. Meanwhile it claims entries that
    another member left pending for longer than `consumer_claim_idle_ms` (XAUTOCLAIM), so a
    member that died does not strand its entries. Redis Streams hand a group's entries to
    its members in turn, with no per-user affinity: for per-user order under failover, run
    one member per group (others take over through the claim), or use Kafka.
    """

    def __init__(
        self, settings: ConsumerSettings, projection: Projection, engine: AsyncEngine | None
    ) -> None:
        super().__init__(settings, projection, engine)
        self._claiming: asyncio.Task[None] | None = None
        self.broker = RedisBroker(
            settings.broker_url,
            message_format=CloudEventJSONFormat,
            logger=logging.getLogger(BROKER_LOGGER),
            log_level=logging.DEBUG,
        )
        self.broker.subscriber(
            stream=StreamSub(
                settings.stream,
                group=self.group,
                consumer=settings.consumer_name,
                batch=True,
                max_records=settings.consumer_batch_size,
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(self.on_batch)

    async def _start_consuming(self) -> None:
        client: Redis = await self.broker.connect()
        await self._ensure_group(client)
        await self._drain_own_pending(client)
        await self.broker.start()
        self._claiming = asyncio.create_task(self._claim_abandoned(client))

    async def _stop_consuming(self) -> None:
        if self._claiming is not None:
            self._claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claiming
        await self.broker.stop()

    async def _claim_abandoned(self, client: Redis) -> None:
        idle = self.settings.consumer_claim_idle_ms
        while True:
            await asyncio.sleep(idle / 2000)
            try:
                await self._claim_once(client, idle)
            except Exception:
                # Claiming is a safety net: a failed round is logged and tried again later.
                logger.exception("%s: claiming abandoned entries failed", self.group)

    async def _claim_once(self, client: Redis, idle: int) -> None:
        start = "0-0"
        while True:
            reply: Any = await client.xautoclaim(
                self.settings.stream,
                self.group,
                self.settings.consumer_name,
                min_idle_time=idle,
                start_id=start,
                count=self.settings.consumer_batch_size,
            )
            start, claimed = reply[0], reply[1]
            if claimed:
                logger.warning("%s: claimed %d abandoned entries", self.group, len(claimed))
                await self._apply_entries(client, claimed)
            if start in (b"0-0", "0-0"):
                return

    async def _ensure_group(self, client: Redis) -> None:
        # Created here rather than by FastStream, which creates groups at `$`: a group made
        # at `$` never sees the backlog that was there before it.
        start = "0" if self.settings.consumer_start == "beginning" else "$"
        try:
            await client.xgroup_create(self.settings.stream, self.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_own_pending(self, client: Redis) -> None:
        # Reading from id 0 returns the entries delivered to this consumer name but never
        # acknowledged: a batch it was applying when it crashed.
        while True:
            reply: Any = await client.xreadgroup(
                self.group,
                self.settings.consumer_name,
                {self.settings.stream: "0"},
                count=self.settings.consumer_batch_size,
            )
            delivered = reply[0][1] if reply else []
            if not delivered:
                return
            await self._apply_entries(client, delivered)

    async def _apply_entries(self, client: Redis, delivered: list[Any]) -> None:
        # An entry trimmed from the stream while pending comes back without fields: there is
        # nothing to apply, only to acknowledge.
        entries = [(entry_id, fields) for entry_id, fields in delivered if fields is not None]
        if entries:
            await self.handle(
                [fields.get(STREAM_FIELD.encode(), b"") for _, fields in entries],
                [entry_id.decode() for entry_id, _ in entries],
            )
        await client.xack(
            self.settings.stream, self.group, *[entry_id for entry_id, _ in delivered]
        )
