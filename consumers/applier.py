"""Applying a batch of events to a projection, exactly once in effect, in one transaction."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.healing import GapFiller
from consumers.projection import Projection
from consumers.tracking import lock_positions, save_positions, tracking_table
from events import (
    Envelope,
    Event,
    MalformedEventError,
    UnknownEventTypeError,
    envelope_from_json,
    event_from_envelope,
)

logger = logging.getLogger(__name__)


@dataclass
class BatchOutcome:
    """What happened to each event of a batch."""

    applied: int = 0
    duplicates: int = 0
    # Known types this projection does not handle, and types newer than this contract.
    skipped: int = 0
    # Sequence jumps applied as they came, and events taken from the log to fill jumps.
    gaps: int = 0
    backfilled: int = 0
    rejected: list[tuple[Envelope, str]] = field(default_factory=list)

    def add(self, other: "BatchOutcome") -> None:
        """Accumulate another batch's outcome into this one."""
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.gaps += other.gaps
        self.backfilled += other.backfilled
        self.rejected.extend(other.rejected)


@dataclass(frozen=True, slots=True)
class Decoded:
    """An envelope and its typed event; no event for an unknown type or malformed data."""

    envelope: Envelope
    event: Event | None
    # Why the data does not fit its type (the event goes to the dead letters).
    malformed: str | None = None


def decode(envelope: Envelope) -> Decoded:
    """Validate the event inside an envelope, before any transaction starts.

    Consumers decode a batch while the previous one's transaction runs, so that the CPU
    work and the database round trips overlap.
    """
    try:
        return Decoded(envelope, event_from_envelope(envelope))
    except UnknownEventTypeError:
        return Decoded(envelope, None)
    except MalformedEventError as exc:
        return Decoded(envelope, None, exc.reason)


class ProjectionApplier:
    """Applies envelopes to one projection together with its tracking records.

    Per user: a sequence at or below the recorded one is a duplicate and changes nothing;
    the next one is applied; one further ahead means events are missing (trimmed history,
    a broker that lost data, a group that started late). With a GapFiller, the missing
    events are taken from the event log and applied first, in the same transaction;
    without one, the event is applied with a warning rather than blocking that user
    forever, and `userbus replay` rebuilds from the complete event log.
    """

    def __init__(self, projection: Projection, gaps: GapFiller | None = None) -> None:
        self.projection = projection
        self.tracking = tracking_table(projection.schema)
        self.gap_filler = gaps

    async def setup(self, conn: AsyncConnection) -> None:
        """Create the projection's schema, tables and tracking table if missing."""
        await self.projection.create_tables(conn)
        await conn.run_sync(self.tracking.metadata.create_all)

    async def apply_batch(
        self, conn: AsyncConnection, envelopes: Sequence[Envelope]
    ) -> BatchOutcome:
        """Apply the batch in `conn`'s transaction; the caller commits."""
        return await self.apply_decoded(conn, [decode(e) for e in envelopes])

    async def apply_decoded(self, conn: AsyncConnection, batch: Sequence[Decoded]) -> BatchOutcome:
        """Apply an already decoded batch in `conn`'s transaction; the caller commits."""
        outcome = BatchOutcome()
        if not batch:
            return outcome
        positions, created = await lock_positions(conn, self.tracking, _final_positions(batch))
        if self.gap_filler is not None:
            batch = await self._fill_gaps(batch, positions, outcome)
        advanced: dict[UUID, int] = {}
        due: list[tuple[Event, Envelope]] = []
        for item in batch:
            envelope = item.envelope
            subject = envelope.user_id
            last = positions[subject]
            if envelope.sequence <= last:
                outcome.duplicates += 1
                continue
            if item.malformed is not None:
                outcome.rejected.append((envelope, item.malformed))
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
            if item.event is None:
                # A newer producer: acknowledge and move on, never break on it.
                if self.projection.keeps_unknown_types:
                    await self._apply_due(conn, due)
                    await self.projection.apply_unknown(conn, envelope)
                    outcome.applied += 1
                else:
                    logger.warning(
                        "%s: skipping unknown type %s", self.projection.name, envelope.type
                    )
                    outcome.skipped += 1
            elif type(item.event) in self.projection.handles:
                due.append((item.event, envelope))
                outcome.applied += 1
            else:
                outcome.skipped += 1
            positions[subject] = envelope.sequence
            if subject not in created:
                advanced[subject] = envelope.sequence
        await self._apply_due(conn, due)
        await save_positions(conn, self.tracking, advanced)
        return outcome

    async def _fill_gaps(
        self, batch: Sequence[Decoded], positions: dict[UUID, int], outcome: BatchOutcome
    ) -> Sequence[Decoded]:
        """The batch with each user's missing events from the log before the first new one."""
        assert self.gap_filler is not None
        first: dict[UUID, Decoded] = {}
        for item in batch:
            subject = item.envelope.user_id
            if subject not in first and item.envelope.sequence > positions[subject]:
                first[subject] = item
        gaps = {
            subject: (positions[subject], item.envelope.sequence)
            for subject, item in first.items()
            if item.envelope.sequence > positions[subject] + 1
        }
        if not gaps:
            return batch
        missing = await self.gap_filler.missing(gaps)
        filled: list[Decoded] = []
        for item in batch:
            subject = item.envelope.user_id
            if first.get(subject) is item and missing.get(subject):
                found = missing.pop(subject)
                filled += [decode(envelope) for envelope in found]
                outcome.backfilled += len(found)
            filled.append(item)
        return filled

    async def _apply_due(self, conn: AsyncConnection, due: list[tuple[Event, Envelope]]) -> None:
        if due:
            await self.projection.apply_many(conn, due)
            due.clear()


def _final_positions(batch: Sequence[Decoded]) -> dict[UUID, int]:
    """Each user's position once the batch is applied, if the user is new to the projection.

    For a user with no tracking record yet, every event of the batch is due except the
    malformed ones and repeats within the batch, so the record can be created at its final
    position at once, saving an UPDATE per new user.
    """
    final: dict[UUID, int] = {}
    for item in batch:
        subject = item.envelope.user_id
        sequence = 0 if item.malformed is not None else item.envelope.sequence
        final[subject] = max(final.get(subject, 0), sequence)
    return final


def parse_envelope(body: Any) -> Envelope:
    """The envelope in a decoded message body; raises if the body is not one."""
    if isinstance(body, dict):
        return Envelope.model_validate(body)
    return envelope_from_json(body)
