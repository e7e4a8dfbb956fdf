"""create_consumer_app: a projection following the stream as a Redis consumer group."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events import Envelope, MalformedEventError, envelope_from_json
from events.wire import BROKER_LOGGER, STREAM_FIELD, CloudEventJSONFormat

logger = logging.getLogger(__name__)

# Errors that say the database is away, not that the batch is bad: retried in place, so
# that nothing behind them is applied first and per-user order holds.
TRANSIENT_ERRORS = (OSError, OperationalError, DBAPIError, ConnectionError)


class StreamConsumer:
    """Applies the stream to one projection; the projection's name is the consumer group.

    Entries are acknowledged only after the transaction holding their effect and their
    tracking records has committed. At start the consumer first re-reads the entries it had
    received but not acknowledged before it stopped, then follows new ones.
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        projection: Projection,
        *,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.settings = settings
        self.applier = ProjectionApplier(projection)
        self.group = projection.name
        # No pre-ping: a connection lost with the database fails its batch with a
        # disconnect error, which invalidates it and is retried in place (see apply).
        self.engine = engine or create_async_engine(settings.database_url)
        self.broker = RedisBroker(
            settings.broker_url,
            message_format=CloudEventJSONFormat,
            logger=logging.getLogger(BROKER_LOGGER),
            log_level=logging.DEBUG,
        )
        self.totals = BatchOutcome()
        self._stopping = asyncio.Event()
        self.broker.subscriber(
            stream=StreamSub(
                settings.stream,
                group=self.group,
                consumer=settings.consumer_name,
                batch=True,
                max_records=settings.consumer_batch_size,
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(self._handle)

    async def start(self) -> None:
        """Create tables and the group, finish unacknowledged entries, then follow the stream."""
        async with self.engine.begin() as conn:
            await self.applier.setup(conn)
        client: Redis = await self.broker.connect()
        await self._ensure_group(client)
        await self._drain_own_pending(client)
        await self.broker.start()

    async def stop(self) -> None:
        """Stop reading; an unfinished batch stays unacknowledged and comes again."""
        self._stopping.set()
        await self.broker.stop()
        await self.engine.dispose()

    async def _handle(self, body: list[Any]) -> None:
        await self.apply(_envelopes(body))

    async def apply(self, envelopes: Sequence[Envelope]) -> None:
        """Apply a batch, retrying while the database is unavailable."""
        delay = 0.1
        while True:
            try:
                async with self.engine.begin() as conn:
                    outcome = await self.applier.apply_batch(conn, envelopes)
                break
            except TRANSIENT_ERRORS as exc:
                if self._stopping.is_set():
                    raise
                logger.warning("%s: database unavailable (%s); retrying", self.group, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for envelope, reason in outcome.rejected:
            logger.error("%s: rejected event %s: %s", self.group, envelope.id, reason)
        self.totals.add(outcome)

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
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self.apply(
                _envelopes([fields.get(STREAM_FIELD.encode()) for _, fields in entries])
            )
            await client.xack(
                self.settings.stream, self.group, *[entry_id for entry_id, _ in entries]
            )


def _envelopes(items: Sequence[Any]) -> list[Envelope]:
    envelopes = []
    for item in items:
        try:
            envelopes.append(
                Envelope.model_validate(item)
                if isinstance(item, dict)
                else envelope_from_json(item)
            )
        except (ValidationError, MalformedEventError, TypeError) as exc:
            logger.error("skipping an entry that is not an event envelope: %s", exc)
    return envelopes


def create_consumer_app(
    settings: ConsumerSettings, projection: Projection, *, engine: AsyncEngine | None = None
) -> StreamConsumer:
    """A consumer of the configured stream for `projection`."""
    return StreamConsumer(settings, projection, engine=engine)
