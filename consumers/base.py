"""What every broker's consumer shares: applying batches, retried in place, and counting."""

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.applier import BatchOutcome, Decoded, ProjectionApplier, decode, parse_envelope
from consumers.dead_letters import DeadLetter, DeadLetterQueue, body_bytes, dead_letters_for
from consumers.errors import ConsumerFailedError
from consumers.failures import is_transient
from consumers.memory import tune_garbage_collection
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events import MalformedEventError

logger = logging.getLogger(__name__)


# Events decoded between two looks at the event loop (about 1 ms of work).
_DECODE_SLICE = 100


class _ConnectFailedError(Exception):
    """No connection to the projection's database could be opened."""


@dataclass(slots=True)
class Delivery:
    """One batch as read from the broker, decoded, with what acknowledges it."""

    decoded: list[Decoded]
    bad: list[DeadLetter]
    # Broker-specific: the entry ids (Redis), the next offset of each partition (Kafka).
    receipt: Any


class ProjectionConsumer(ABC):
    """A projection fed by a broker; subclasses fetch batches and acknowledge them.

    The projection's name is the consumer group. A message is acknowledged (Redis XACK,
    Kafka offset commit) only after the transaction holding its effect and its tracking
    records has committed, so a crash at any point leaves it to be delivered again, and
    the tracking records make that redelivery change nothing.

    Two tasks run: a reader fetches and decodes the next batch while the applier's
    transaction for the previous one runs, so that this process's CPU work overlaps the
    database's. The applier takes batches in the order they were read, and does not move
    on from one until it is applied and acknowledged.
    """

    def __init__(
        self, settings: ConsumerSettings, projection: Projection, engine: AsyncEngine | None
    ) -> None:
        self.settings = settings
        self.applier = ProjectionApplier(projection)
        self.group = settings.consumer_group or projection.name
        # No pre-ping: a connection lost with the database fails its batch with a
        # disconnect error, which invalidates it and is retried in place (see apply).
        self.engine = engine or create_async_engine(settings.database_url)
        self.totals = BatchOutcome()
        self.dead_letters: DeadLetterQueue = dead_letters_for(settings.broker_url, settings.stream)
        self.dead_lettered = 0
        self._stopping = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._applying: asyncio.Task[None] | None = None
        self._busy = False

    async def start(self) -> None:
        """Create the projection's tables, connect, and start consuming in the background."""
        async with self.engine.begin() as conn:
            await self.applier.setup(conn)
        await self._connect()
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
        await self._disconnect()
        await self.dead_letters.close()
        await self.engine.dispose()

    async def _read(self, queue: "asyncio.Queue[Delivery]") -> None:
        delay = 0.1
        while True:
            try:
                fetched = await self._fetch()
            except Exception as exc:
                # The broker is away or restarting: keep trying; nothing read is lost,
                # because nothing is acknowledged before it is applied.
                logger.warning("%s: reading from the broker failed (%r); retrying", self.group, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if fetched is None:
                continue
            bodies, origins, receipt = fetched
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
            await queue.put(Delivery(decoded, bad, receipt))

    async def _apply(self, queue: "asyncio.Queue[Delivery]") -> None:
        while not self._stopping.is_set():
            delivery = await queue.get()
            self._busy = True
            try:
                await self._settle_and_acknowledge(delivery)
            finally:
                self._busy = False

    async def _settle_and_acknowledge(self, delivery: Delivery) -> None:
        await self._persist("apply", lambda: self.settle(delivery.decoded, delivery.bad))
        await self._persist("acknowledge", lambda: self._acknowledge(delivery.receipt))

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
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def decode(
        self, bodies: Sequence[Any], origins: Sequence[str] = ()
    ) -> tuple[list[Decoded], list[DeadLetter]]:
        """Parse message bodies; one that is not an event envelope becomes a dead letter."""
        origins = list(origins) or [""] * len(bodies)
        decoded, bad = [], []
        for body, origin in zip(bodies, origins, strict=True):
            try:
                decoded.append(decode(parse_envelope(body)))
            except (ValidationError, MalformedEventError, TypeError, ValueError) as exc:
                bad.append(DeadLetter(body_bytes(body), f"not an event: {exc}", self.group, origin))
        return decoded, bad

    async def handle(self, bodies: Sequence[Any], origins: Sequence[str] = ()) -> None:
        """Decode and apply a batch of message bodies (see `settle`)."""
        await self.settle(*self.decode(bodies, origins))

    async def settle(self, decoded: Sequence[Decoded], bad: Sequence[DeadLetter] = ()) -> None:
        """Apply a decoded batch; what cannot be applied goes to the dead letters.

        A body that is not an event envelope is dead-lettered at once. If the batch fails
        for a reason other than the database being away, its events are applied one at a
        time, each with `consumer_max_attempts` tries, so one poison event cannot hold up
        the rest.
        """
        if bad:
            await self._dead_letter(list(bad))
        try:
            await self.apply(decoded)
        except Exception as exc:
            if self._stopping.is_set():
                raise
            logger.warning("%s: batch failed (%r); applying its events one by one", self.group, exc)
            for item in decoded:
                await self._apply_with_attempts(item)

    async def apply(self, decoded: Sequence[Decoded]) -> None:
        """Apply a batch, retrying while the database is unavailable."""
        delay = 0.1
        while True:
            try:
                outcome = await self._apply_once(decoded)
                break
            except Exception as exc:
                transient = isinstance(exc, _ConnectFailedError) or is_transient(exc)
                if not transient or self._stopping.is_set():
                    raise
                logger.warning("%s: database unavailable (%s); retrying", self.group, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.totals.add(outcome)
        if outcome.rejected:
            await self._dead_letter(
                [
                    DeadLetter(e.model_dump_json().encode(), f"invalid data: {why}", self.group)
                    for e, why in outcome.rejected
                ]
            )

    async def _apply_once(self, decoded: Sequence[Decoded]) -> BatchOutcome:
        try:
            conn = await self.engine.connect()
        except Exception as exc:
            # Whatever stops a connection from opening (the database restarting, refusing
            # connections, out of slots) says the database is away, never that the batch is bad.
            raise _ConnectFailedError(exc) from exc
        try:
            async with conn.begin():
                return await self.applier.apply_decoded(conn, decoded)
        finally:
            await conn.close()

    async def _apply_with_attempts(self, item: Decoded) -> None:
        envelope = item.envelope
        error: Exception | None = None
        for attempt in range(1, self.settings.consumer_max_attempts + 1):
            try:
                await self.apply([item])
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                error = exc
                logger.warning(
                    "%s: event %s failed (attempt %d): %r", self.group, envelope.id, attempt, exc
                )
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
        reason = f"failed {self.settings.consumer_max_attempts} times: {error!r}"
        await self._dead_letter(
            [DeadLetter(envelope.model_dump_json().encode(), reason, self.group, str(envelope.id))]
        )

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            logger.error("%s: dead-lettering %s: %s", self.group, letter.origin, letter.error)
        await self.dead_letters.send(letters)
        self.dead_lettered += len(letters)

    @abstractmethod
    async def _connect(self) -> None:
        """Connect to the broker (and recover what this member left unfinished)."""

    @abstractmethod
    async def _fetch(self) -> tuple[list[Any], list[str], Any] | None:
        """The next batch: message bodies, their origins for logs, and a receipt; None if idle."""

    @abstractmethod
    async def _acknowledge(self, receipt: Any) -> None:
        """Acknowledge a batch that is applied (its transaction committed)."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the broker connections."""
