"""A projection following a Redis/Valkey Stream as a consumer group."""

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.base import ProjectionConsumer
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events.wire import STREAM_FIELD

logger = logging.getLogger(__name__)

_DATA = STREAM_FIELD.encode()
# How long one XREADGROUP waits for new entries before the reader looks again.
_BLOCK_MS = 1000


class RedisStreamConsumer(ProjectionConsumer):
    """Reads the stream in batches as a member of the projection's consumer group.

    At start it first re-applies the entries it had received but not acknowledged before
    it stopped (a crash mid-batch), then follows new ones. Meanwhile it claims entries that
    another member left pending for longer than `consumer_claim_idle_ms` (XAUTOCLAIM), so a
    member that died does not strand its entries. Redis Streams hand a group's entries to
    its members in turn, with no per-user affinity: for per-user order under failover, run
    one member per group (others take over through the claim), or use Kafka.

    It reads with XREADGROUP itself rather than through a FastStream subscriber: each entry
    is parsed once, straight from its bytes (FastStream's batch parser decodes, re-encodes
    and decodes every entry again), and a group that vanished (a Valkey restarted without
    its data) is created again instead of the subscriber stopping for good.
    """

    def __init__(
        self, settings: ConsumerSettings, projection: Projection, engine: AsyncEngine | None
    ) -> None:
        super().__init__(settings, projection, engine)
        self._client: Redis | None = None
        self._claiming: asyncio.Task[None] | None = None

    @property
    def client(self) -> Redis:
        """The connection pool to the broker, once connected."""
        if self._client is None:
            raise RuntimeError("the consumer is not connected")
        return self._client

    async def _connect(self) -> None:
        self._client = Redis.from_url(self.settings.broker_url)
        await self._ensure_group()
        await self._drain_own_pending()
        self._claiming = asyncio.create_task(self._claim_abandoned())

    async def _disconnect(self) -> None:
        if self._claiming is not None:
            self._claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claiming
        if self._client is not None:
            await self._client.aclose()

    async def _fetch(self) -> tuple[list[Any], list[str], Any] | None:
        try:
            reply: Any = await self.client.xreadgroup(
                self.group,
                self.settings.consumer_name,
                {self.settings.stream: ">"},
                count=self.settings.consumer_batch_size,
                block=_BLOCK_MS,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or the group is gone (a restart without persistence, a deleted
            # key): recreate it where `consumer_start` says and go on.
            logger.warning("%s: the consumer group vanished; creating it again", self.group)
            await self._ensure_group()
            return None
        delivered = reply[0][1] if reply else []
        if not delivered:
            return None
        return self._unpack(delivered)

    async def _acknowledge(self, receipt: Any) -> None:
        if receipt:
            await self.client.xack(self.settings.stream, self.group, *receipt)

    def _unpack(self, delivered: list[Any]) -> tuple[list[Any], list[str], list[bytes]]:
        # An entry trimmed from the stream while pending comes back without fields: there is
        # nothing to apply, only to acknowledge.
        entries = [(entry_id, fields) for entry_id, fields in delivered if fields is not None]
        bodies = [fields.get(_DATA, b"") for _, fields in entries]
        origins = [entry_id.decode() for entry_id, _ in entries]
        return bodies, origins, [entry_id for entry_id, _ in delivered]

    async def _settle_entries(self, delivered: list[Any]) -> None:
        bodies, origins, receipt = self._unpack(delivered)
        if bodies:
            await self.handle(bodies, origins)
        await self._acknowledge(receipt)

    async def _claim_abandoned(self) -> None:
        idle = self.settings.consumer_claim_idle_ms
        while True:
            await asyncio.sleep(idle / 2000)
            try:
                await self._claim_once(idle)
            except Exception:
                # Claiming is a safety net: a failed round is logged and tried again later.
                logger.exception("%s: claiming abandoned entries failed", self.group)

    async def _claim_once(self, idle: int) -> None:
        start = "0-0"
        while True:
            reply: Any = await self.client.xautoclaim(
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
                await self._settle_entries(claimed)
            if start in (b"0-0", "0-0"):
                return

    async def _ensure_group(self) -> None:
        # Created at the beginning of the stream by default, not at `$` as most clients (and
        # FastStream) do: a group made at `$` never sees the backlog that was there before it.
        start = "0" if self.settings.consumer_start == "beginning" else "$"
        try:
            await self.client.xgroup_create(
                self.settings.stream, self.group, id=start, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_own_pending(self) -> None:
        # Reading from id 0 returns the entries delivered to this consumer name but never
        # acknowledged: a batch it was applying when it crashed.
        while True:
            reply: Any = await self.client.xreadgroup(
                self.group,
                self.settings.consumer_name,
                {self.settings.stream: "0"},
                count=self.settings.consumer_batch_size,
            )
            delivered = reply[0][1] if reply else []
            if not delivered:
                return
            await self._settle_entries(delivered)
