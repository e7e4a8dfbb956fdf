"""What every broker's consumer shares: applying batches, retried in place, and counting."""

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events import Envelope, MalformedEventError, envelope_from_json

logger = logging.getLogger(__name__)

# Errors that say the database is away, not that the batch is bad: retried in place, so
# that nothing behind them is applied first and per-user order holds.
TRANSIENT_ERRORS = (OSError, OperationalError, DBAPIError, ConnectionError)


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
        await self.engine.dispose()

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

    @abstractmethod
    async def _start_consuming(self) -> None:
        """Connect to the broker and begin delivering batches to `apply`."""

    @abstractmethod
    async def _stop_consuming(self) -> None:
        """Finish the batch in hand and disconnect."""


def parse_envelopes(items: Sequence[Any]) -> list[Envelope]:
    """The envelopes among message bodies; anything else is logged and left out."""
    envelopes = []
    for item in items:
        try:
            envelopes.append(
                Envelope.model_validate(item)
                if isinstance(item, dict)
                else envelope_from_json(item)
            )
        except (ValidationError, MalformedEventError, TypeError) as exc:
            logger.error("skipping a message that is not an event envelope: %s", exc)
    return envelopes
