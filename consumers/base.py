"""What every broker's consumer shares: applying batches, retried in place, and counting."""

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.dead_letters import DeadLetter, DeadLetterQueue, body_bytes, dead_letters_for
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events import Envelope, MalformedEventError, envelope_from_json

logger = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Whether an error says the database is away rather than that the batch is bad.

    Transient errors are retried in place, for as long as it takes, so that nothing behind
    them is applied first and per-user order holds. Anything else (a constraint the event
    breaks, a bug in a handler) is the event's fault: it gets a few attempts, then the
    dead-letter stream.
    """
    if isinstance(exc, OSError | ConnectionError | OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    # Refused or lost connections (database restarting, out of slots) and conflicts that a
    # retry resolves, by SQLSTATE: 08 connection, 53 resources, 57P operator intervention,
    # 40001 serialization failure, 40P01 deadlock.
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return exc.connection_invalidated or sqlstate.startswith(_TRANSIENT_SQLSTATES)


_TRANSIENT_SQLSTATES = ("08", "53", "57P", "40001", "40P01")


class _ConnectFailedError(Exception):
    """No connection to the projection's database could be opened."""


class ProjectionConsumer(ABC):
    """A projection fed by a broker; subclasses connect `apply` to their subscription.

    The projection's name is the consumer group. A message is acknowledged (Redis XACK,
    Kafka offset commit) only after the transaction holding its effect and its tracking
    records has committed, so a crash at any point leaves it to be delivered again, and
    the tracking records make that redelivery change nothing.
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

    async def start(self) -> None:
        """Create the projection's tables, then start consuming."""
        async with self.engine.begin() as conn:
            await self.applier.setup(conn)
        await self._start_consuming()

    async def stop(self) -> None:
        """Stop consuming; an unfinished batch stays unacknowledged and comes again."""
        self._stopping.set()
        await self._stop_consuming()
        await self.dead_letters.close()
        await self.engine.dispose()

    async def handle(self, bodies: Sequence[Any], origins: Sequence[str] = ()) -> None:
        """Apply a batch of message bodies; what cannot be applied goes to the dead letters.

        A body that is not an event envelope is dead-lettered at once. If the batch fails
        for a reason other than the database being away, its events are applied one at a
        time, each with `consumer_max_attempts` tries, so one poison event cannot hold up
        the rest.
        """
        origins = list(origins) or [""] * len(bodies)
        envelopes, bad = [], []
        for body, origin in zip(bodies, origins, strict=True):
            try:
                envelopes.append(parse_envelope(body))
            except (ValidationError, MalformedEventError, TypeError, ValueError) as exc:
                bad.append(DeadLetter(body_bytes(body), f"not an event: {exc}", self.group, origin))
        if bad:
            await self._dead_letter(bad)
        try:
            await self.apply(envelopes)
        except Exception as exc:
            if self._stopping.is_set():
                raise
            logger.warning("%s: batch failed (%r); applying its events one by one", self.group, exc)
            for envelope in envelopes:
                await self._apply_with_attempts(envelope)

    async def on_batch(self, body: list[Any]) -> None:
        """The subscribers' handler: FastStream passes the decoded bodies of one batch."""
        await self.handle(body)

    async def apply(self, envelopes: Sequence[Envelope]) -> None:
        """Apply a batch, retrying while the database is unavailable."""
        delay = 0.1
        while True:
            try:
                outcome = await self._apply_once(envelopes)
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

    async def _apply_once(self, envelopes: Sequence[Envelope]) -> BatchOutcome:
        try:
            conn = await self.engine.connect()
        except Exception as exc:
            # Whatever stops a connection from opening (the database restarting, refusing
            # connections, out of slots) says the database is away, never that the batch is bad.
            raise _ConnectFailedError(exc) from exc
        try:
            async with conn.begin():
                return await self.applier.apply_batch(conn, envelopes)
        finally:
            await conn.close()

    async def _apply_with_attempts(self, envelope: Envelope) -> None:
        error: Exception | None = None
        for attempt in range(1, self.settings.consumer_max_attempts + 1):
            try:
                await self.apply([envelope])
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
    async def _start_consuming(self) -> None:
        """Connect to the broker and begin delivering batches to `apply`."""

    @abstractmethod
    async def _stop_consuming(self) -> None:
        """Finish the batch in hand and disconnect."""


def parse_envelope(body: Any) -> Envelope:
    """The envelope in a decoded message body; raises if the body is not one."""
    if isinstance(body, dict):
        return Envelope.model_validate(body)
    return envelope_from_json(body)
