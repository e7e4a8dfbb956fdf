"""A member of a Redis/Valkey Stream consumer group: XREADGROUP, XACK, XAUTOCLAIM."""

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from infra.reading import Batch, CatchUp, ReaderOptions, Recover
from infra.redis.trimming import trimmed_past
from infra.redis.wire import DATA

logger = logging.getLogger(__name__)

# How long one XREADGROUP waits for new entries before the reader looks again.
_BLOCK_MS = 1000

EntryIds = list[bytes]


class RedisGroupReader:
    """Reads the stream in batches as a member of the consumer group `options.group`.

    At connect it first re-applies the entries it had received but not acknowledged before
    it stopped (a crash mid-batch), then follows new ones. Meanwhile it claims entries that
    another member left pending for longer than `claim_idle_ms` (XAUTOCLAIM), so a member
    that died does not strand its entries. Redis Streams hand a group's entries to its
    members in turn, with no per-user affinity: for per-user order under failover, run one
    member per group (others take over through the claim), or use Kafka.

    It reads with XREADGROUP itself rather than through a FastStream subscriber: each entry
    is parsed once, straight from its bytes (FastStream's batch parser decodes, re-encodes
    and decodes every entry again), and a group that vanished (a Valkey restarted without
    its data) is created again instead of the subscriber stopping for good.
    """

    def __init__(self, url: str, options: ReaderOptions) -> None:
        self._url = url
        self._options = options
        self._client: Redis | None = None
        self._recover: Recover | None = None
        self._claiming: asyncio.Task[None] | None = None

    @property
    def client(self) -> Redis:
        """The connection pool to the broker, once connected."""
        if self._client is None:
            raise RuntimeError("the consumer is not connected")
        return self._client

    async def connect(self, recover: Recover, stopping: asyncio.Event) -> None:
        """Join the group, apply this member's own pending entries, start claiming others'."""
        self._client = Redis.from_url(self._url)
        self._recover = recover
        await self._ensure_group()
        await self._drain_own_pending()
        self._claiming = asyncio.create_task(self._claim_abandoned())

    async def close(self) -> None:
        """Stop claiming and close the connection pool."""
        if self._claiming is not None:
            self._claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claiming
        if self._client is not None:
            await self._client.aclose()

    async def fetch(self) -> Batch[EntryIds] | None:
        """New entries for this member (XREADGROUP `>`); None after a wait with none."""
        options = self._options
        try:
            reply: Any = await self.client.xreadgroup(
                options.group,
                options.consumer,
                {options.stream: ">"},
                count=options.batch_size,
                block=_BLOCK_MS,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or the group is gone (a restart without persistence, a deleted
            # key): whatever the stream holds now came after, so the group is created again
            # at its beginning, whatever `start` says (the relay publishes the log again).
            logger.warning(
                "%s: the consumer group vanished; creating it again at the stream's beginning",
                options.group,
            )
            await self._ensure_group(at="0")
            return None
        delivered = reply[0][1] if reply else []
        if not delivered:
            return None
        return _unpack(delivered)

    async def acknowledge(self, receipt: EntryIds) -> None:
        """XACK the batch's entries."""
        if receipt:
            await self.client.xack(self._options.stream, self._options.group, *receipt)

    async def _settle_entries(self, delivered: list[Any]) -> None:
        batch = _unpack(delivered)
        if batch.bodies:
            assert self._recover is not None, "connect() first"
            await self._recover(batch.bodies, batch.origins)
        await self.acknowledge(batch.receipt)

    async def _claim_abandoned(self) -> None:
        idle = self._options.claim_idle_ms
        while True:
            await asyncio.sleep(idle / 2000)
            try:
                await self._claim_once(idle)
            except Exception:
                # Claiming is a safety net: a failed round is logged and tried again later.
                logger.exception("%s: claiming abandoned entries failed", self._options.group)

    async def _claim_once(self, idle: int) -> None:
        options = self._options
        start = "0-0"
        while True:
            reply: Any = await self.client.xautoclaim(
                options.stream,
                options.group,
                options.consumer,
                min_idle_time=idle,
                start_id=start,
                count=options.batch_size,
            )
            start, claimed = reply[0], reply[1]
            if claimed:
                logger.warning("%s: claimed %d abandoned entries", options.group, len(claimed))
                await self._settle_entries(claimed)
            if start in (b"0-0", "0-0"):
                return

    async def catch_up(self, read_log: CatchUp | None) -> None:
        """Read the event log first while the stream lacks entries the group has not seen.

        Entries were removed (trimmed, or erased) from before the first one the group could
        still read: the stream's end is noted, the log applied, and the group set to the
        noted entry; again if the stream was trimmed past that meanwhile.
        """
        client = Redis.from_url(self._url)
        try:
            self._client = client
            await self._ensure_group()
            after = 0
            while (needed := await trimmed_past(client, self._options)) is not None:
                noted, why = needed
                if read_log is None:
                    logger.warning(
                        "%s: %s; without the event log (USERBUS_EVENT_LOG_URL or "
                        "USERBUS_FEED_URL) it misses those events", self._options.group, why,
                    )  # fmt: skip
                    return
                logger.warning("%s: %s; reading the event log first", self._options.group, why)
                after = await read_log(after)
                await client.xgroup_setid(self._options.stream, self._options.group, id=noted)
        finally:
            self._client = None
            await client.aclose()

    async def _ensure_group(self, at: str | None = None) -> None:
        # Created at the beginning of the stream by default, not at `$` as most clients (and
        # FastStream) do: a group made at `$` never sees the backlog that was there before it.
        start = at or ("0" if self._options.start == "beginning" else "$")
        try:
            await self.client.xgroup_create(
                self._options.stream, self._options.group, id=start, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_own_pending(self) -> None:
        # Reading from id 0 returns the entries delivered to this consumer name but never
        # acknowledged: a batch it was applying when it crashed.
        options = self._options
        while True:
            reply: Any = await self.client.xreadgroup(
                options.group,
                options.consumer,
                {options.stream: "0"},
                count=options.batch_size,
            )
            delivered = reply[0][1] if reply else []
            if not delivered:
                return
            await self._settle_entries(delivered)


def _unpack(delivered: list[Any]) -> Batch[EntryIds]:
    # An entry trimmed from the stream while pending comes back without fields: there is
    # nothing to apply, only to acknowledge.
    entries = [(entry_id, fields) for entry_id, fields in delivered if fields is not None]
    bodies: list[Any] = [fields.get(DATA, b"") for _, fields in entries]
    origins = [entry_id.decode() for entry_id, _ in entries]
    return Batch(bodies, origins, [entry_id for entry_id, _ in delivered])
