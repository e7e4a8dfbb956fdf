"""ProjectionConsumer: a projection fed by a broker's group reader, batch after batch."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.applier import BatchOutcome, Decoded, ProjectionApplier
from consumers.catch_up import LogCatchUp
from consumers.errors import ConsumerFailedError
from consumers.healing import GapFiller
from consumers.memory import tune_garbage_collection
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from consumers.settled import SettledEvents
from consumers.settler import BatchSettler
from infra.dead_letters import DeadLetter, DeadLetterQueue
from infra.event_log import EventLog
from infra.publishing import TopicLayout, retention_ms
from infra.reading import GroupReader, ReaderOptions

logger = logging.getLogger(__name__)


# Events decoded between two looks at the event loop: small enough that a database reply
# waiting meanwhile is answered soon.
_DECODE_SLICE = 100


@dataclass(slots=True)
class Delivery:
    """One batch as read from the broker, decoded, with what acknowledges it."""

    decoded: list[Decoded]
    bad: list[DeadLetter]
    # Broker-specific: the entry ids (Redis), the next offset of each partition (Kafka).
    receipt: Any


def consumer_group(settings: ConsumerSettings, projection: Projection) -> str:
    """The projection's consumer group: its name, unless the settings name another."""
    return settings.consumer_group or projection.name


def reader_options(settings: ConsumerSettings, projection: Projection) -> ReaderOptions:
    """How a member of the projection's consumer group reads, from the consumer settings."""
    return ReaderOptions(
        stream=settings.stream,
        group=consumer_group(settings, projection),
        consumer=settings.consumer_name,
        batch_size=settings.consumer_batch_size,
        start=settings.consumer_start,
        claim_idle_ms=settings.consumer_claim_idle_ms,
        layout=TopicLayout(
            settings.kafka_partitions,
            settings.kafka_replication_factor,
            retention_ms(settings.kafka_retention_hours),
        ),
        session_timeout_ms=settings.kafka_session_timeout_ms,
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
    )


class ProjectionConsumer:
    """A projection fed by a broker, through a member of the projection's consumer group.

    The projection's name is the consumer group. A message is acknowledged (Redis XACK,
    Kafka offset commit) only after the transaction holding its effect and its tracking
    records has committed, so a crash at any point leaves it to be delivered again, and
    the tracking records make that redelivery change nothing.

    Two tasks run: a reader fetches and decodes the next batch while the applier's
    transaction for the previous one runs, so that this process's CPU work overlaps the
    database's. The applier takes batches in the order they were read, and does not move
    on from one until it is applied and acknowledged.

    With the event log (consumers/healing.py), it heals from it: sequence gaps are filled,
    and a group whose stream no longer holds what it needs reads the log first.
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        projection: Projection,
        reader: GroupReader[Any],
        dead_letters: DeadLetterQueue,
        *,
        engine: AsyncEngine | None = None,
        log: EventLog | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.log = log
        self.group = consumer_group(settings, projection)
        # No pre-ping: a connection lost with the database fails its batch with a
        # disconnect error, which invalidates it and is retried in place (see the settler).
        self.engine = engine or create_async_engine(settings.database_url)
        self._stopping = asyncio.Event()
        self.settler = BatchSettler(
            ProjectionApplier(projection, GapFiller(log, self.group) if log else None),
            self.engine,
            dead_letters,
            group=self.group,
            max_attempts=settings.consumer_max_attempts,
            stopping=self._stopping,
        )
        self.settled = SettledEvents.of(self.group, otel=settings.otel_enabled)
        self._reader: asyncio.Task[None] | None = None
        self._applying: asyncio.Task[None] | None = None
        self._busy = False

    @property
    def totals(self) -> BatchOutcome:
        """What happened to the events applied so far, added up."""
        return self.settler.totals

    @property
    def dead_lettered(self) -> int:
        """How many messages went to the dead letters so far."""
        return self.settler.dead_lettered

    async def start(self) -> None:
        """Create the projection's tables, connect, and start consuming in the background."""
        async with self.engine.begin() as conn:
            await self.settler.applier.setup(conn)
        catch_up = None
        if self.log is not None:
            size = self.settings.consumer_batch_size
            catch_up = LogCatchUp(self.log, self.settler, group=self.group, page_size=size)
        await self.reader.catch_up(catch_up)
        await self.reader.connect(self.handle, self._stopping)
        tune_garbage_collection(self.settings.consumer_gc_threshold)
        # One batch read ahead: enough to overlap, and a stop leaves little unacknowledged.
        queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=1)
        self._reader = asyncio.create_task(self._read(queue), name=f"{self.group}-reader")
        self._applying = asyncio.create_task(self._apply(queue), name=f"{self.group}-applier")

    async def serve(self, stop: asyncio.Event) -> None:
        """Wait until `stop` is set; raise ConsumerFailedError if consuming ends before.

        The reader and the applier retry every failure they can; one that ends them anyway
        is a bug, and a process that went on running without consuming would hide it.
        """
        tasks = {task for task in (self._reader, self._applying) if task is not None}
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for task in done & tasks:
            if stop.is_set() or task.cancelled():
                continue
            logger.critical("%s: %s ended", self.group, task.get_name(), exc_info=task.exception())
            raise ConsumerFailedError(self.group) from task.exception()

    async def stop(self) -> None:
        """Finish and acknowledge the batch being applied, then disconnect.

        A batch read ahead but not yet applied stays unacknowledged and comes again.
        """
        self._stopping.set()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._applying is not None:
            if not self._busy:
                self._applying.cancel()  # waiting for a batch: nothing in hand
            for outcome in await asyncio.gather(self._applying, return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.warning("%s: stopped during a batch: %r", self.group, outcome)
        await self.reader.close()
        await self.settler.dead_letters.close()
        if self.log is not None:
            await self.log.close()
        await self.engine.dispose()
        self.settled.close()

    async def _read(self, queue: "asyncio.Queue[Delivery]") -> None:
        delay = 0.1
        while True:
            self.settler.heartbeat.beat()  # each turn, retries too; a hung fetch stops it
            try:
                batch = await self.reader.fetch()
            except Exception as exc:
                # The broker is away or restarting: keep trying; nothing read is lost,
                # because nothing is acknowledged before it is applied.
                logger.warning("%s: reading from the broker failed (%r); retrying", self.group, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if batch is None:
                continue
            bodies, origins = batch.bodies, batch.origins
            decoded: list[Decoded] = []
            bad: list[DeadLetter] = []
            for start in range(0, len(bodies), _DECODE_SLICE):
                more, worse = self.decode(
                    bodies[start : start + _DECODE_SLICE], origins[start : start + _DECODE_SLICE]
                )
                decoded += more
                bad += worse
                # Let the applier's transaction go on between slices: a database reply that
                # arrives meanwhile is answered at once, so the two really overlap.
                await asyncio.sleep(0)
            await queue.put(Delivery(decoded, bad, batch.receipt))

    async def _apply(self, queue: "asyncio.Queue[Delivery]") -> None:
        while not self._stopping.is_set():
            delivery = await queue.get()
            self._busy = True
            try:
                await self._settle_and_acknowledge(delivery)
            finally:
                self._busy = False

    async def _settle_and_acknowledge(self, delivery: Delivery) -> None:
        started = self.settled.now()
        await self._persist("apply", lambda: self.settler.settle(delivery.decoded, delivery.bad))
        await self._persist("acknowledge", lambda: self.reader.acknowledge(delivery.receipt))
        self.settled.record([item.envelope for item in delivery.decoded], started)

    async def _persist(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` until it succeeds: a batch is never skipped, so later ones wait."""
        delay = 0.1
        while True:
            try:
                await step()
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                logger.warning("%s: could not %s a batch (%r); retrying", self.group, what, exc)
                self.settler.retries += 1
                self.settler.heartbeat.beat()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def decode(
        self, bodies: Sequence[Any], origins: Sequence[str] = ()
    ) -> tuple[list[Decoded], list[DeadLetter]]:
        """Parse message bodies; one that is not an event envelope becomes a dead letter."""
        return self.settler.decode(bodies, origins)

    async def handle(self, bodies: Sequence[Any], origins: Sequence[str] = ()) -> None:
        """Decode and apply a batch of message bodies at once (what a reader recovers)."""
        await self.settler.settle(*self.decode(bodies, origins))
