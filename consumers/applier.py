"""Applying a batch of events to a projection, exactly once in effect, in one transaction."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from consumers.tracking import lock_positions, save_positions, tracking_table
from events import Envelope, MalformedEventError, UnknownEventTypeError, event_from_envelope

logger = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    """What happened to each event of a batch."""

    applied: int = 0
    duplicates: int = 0
    # Known types this projection does not handle, and types newer than this contract.
    skipped: int = 0
    gaps: int = 0
    rejected: list[tuple[Envelope, str]] = field(default_factory=list)

    def add(self, other: "BatchOutcome") -> None:
        """Accumulate another batch's outcome into this one."""
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.gaps += other.gaps
        self.rejected.extend(other.rejected)


class ProjectionApplier:
    """Applies envelopes to one projection together with its tracking records.

    Per user: a sequence at or below the recorded one is a duplicate and changes nothing;
    the next one is applied; one further ahead means events are missing (trimmed history,
    or a group that started late): it is applied with a warning rather than blocking that
    user forever, and `userbus replay` rebuilds from the complete event log.
    """

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.tracking = tracking_table(projection.name)

    async def setup(self, conn: AsyncConnection) -> None:
        """Create the projection's schema, tables and tracking table if missing."""
        await self.projection.create_tables(conn)
        await conn.run_sync(self.tracking.metadata.create_all)

    async def reset(self, conn: AsyncConnection) -> None:
        """Empty the projection and forget every position (before a replay)."""
        await self.projection.reset(conn)
        await conn.execute(text(f'TRUNCATE "{self.tracking.schema}".tracking'))

    async def apply_batch(
        self, conn: AsyncConnection, envelopes: Sequence[Envelope]
    ) -> BatchOutcome:
        """Apply the batch in `conn`'s transaction; the caller commits."""
        outcome = BatchOutcome()
        if not envelopes:
            return outcome
        positions = await lock_positions(conn, self.tracking, [e.user_id for e in envelopes])
        advanced: dict[UUID, int] = {}
        for envelope in envelopes:
            subject = envelope.user_id
            last = positions[subject]
            if envelope.sequence <= last:
                outcome.duplicates += 1
                continue
            if envelope.sequence > last + 1:
                outcome.gaps += 1
                logger.warning(
                    "%s: user %s jumps from sequence %d to %d (events missing)",
                    self.projection.name,
                    subject,
                    last,
                    envelope.sequence,
                )
            try:
                event = event_from_envelope(envelope)
            except UnknownEventTypeError as exc:
                # A newer producer: acknowledge and move on, never break on it.
                if self.projection.keeps_unknown_types:
                    await self.projection.apply_unknown(conn, envelope)
                    outcome.applied += 1
                else:
                    logger.warning("%s: skipping %s", self.projection.name, exc)
                    outcome.skipped += 1
            except MalformedEventError as exc:
                outcome.rejected.append((envelope, exc.reason))
                continue
            else:
                if type(event) in self.projection.handles:
                    await self.projection.apply(conn, event, envelope)
                    outcome.applied += 1
                else:
                    outcome.skipped += 1
            positions[subject] = advanced[subject] = envelope.sequence
        await save_positions(conn, self.tracking, advanced)
        return outcome
