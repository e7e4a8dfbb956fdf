"""Writing a prepared page into a shadow: in bulk, or through the normal path when it must.

The fast path drops duplicates against the shadow's tracking records in one query, lets
the projection's BulkRows write its rows in bulk, and writes the tracking records with COPY
(new users) and one UPDATE (the others). The normal path applies the decoded batch with
ProjectionApplier, as a consumer would. Both give the same tables: the fast path refuses
(NotBulkableError, before it writes anything) whatever it does not handle exactly as the
models and the applier would (consumers/replay/prepare.py, checks.py).
"""

import logging

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.applier import BatchOutcome, ProjectionApplier, decode
from consumers.replay.driver import asyncpg_of
from consumers.replay.prepare import ONLY_TRACKED, Due, PreparedPage, envelopes
from consumers.replay.raw import BulkRows, NotBulkableError

logger = logging.getLogger(__name__)


async def apply_page(
    conn: AsyncConnection, applier: ProjectionApplier, prepared: PreparedPage
) -> BatchOutcome:
    """Write a prepared page into the applier's projection (a shadow), in `conn`'s transaction."""
    bulk = applier.projection.bulk_rows()
    if prepared.raw is not None and bulk is not None:
        try:
            return await _apply_bulk(conn, applier, bulk, prepared.raw)
        except NotBulkableError as exc:  # from plan(): only the tracking was read so far
            logger.debug("%s: a page goes through the models: %s", applier.projection.name, exc)
            decoded = [decode(e) for e in envelopes(prepared.page)]
            return await applier.apply_decoded(conn, decoded)
    assert prepared.decoded is not None
    return await applier.apply_decoded(conn, prepared.decoded)


async def _apply_bulk(
    conn: AsyncConnection, applier: ProjectionApplier, bulk: BulkRows, events: list[Due]
) -> BatchOutcome:
    projection = applier.projection
    driver = await asyncpg_of(conn)
    schema = projection.schema
    rows = await driver.fetch(
        f'SELECT subject::text, sequence FROM "{schema}".tracking WHERE subject = ANY($1::uuid[])',
        list({subject: None for subject, _, _, _ in events}),
    )
    before: dict[str, int] = {subject: sequence for subject, sequence in rows}
    positions = dict(before)
    outcome = BatchOutcome()
    due: list[tuple[str, str, object]] = []
    for subject, sequence, kind, prepared in events:
        last = positions.get(subject, 0)
        if sequence <= last:
            outcome.duplicates += 1
            continue
        if sequence > last + 1:
            outcome.gaps += 1
            logger.warning(
                "%s: user %s jumps from sequence %d to %d (events missing)",
                projection.name,
                subject,
                last,
                sequence,
            )
        if prepared is not ONLY_TRACKED:
            due.append((subject, kind, prepared))
            outcome.applied += 1
        else:
            outcome.skipped += 1
        positions[subject] = sequence
    await bulk.write(driver, schema, bulk.plan(due, before.keys()))
    await _save_positions(driver, schema, positions, before)
    return outcome


async def _save_positions(
    driver: asyncpg.Connection, schema: str, positions: dict[str, int], before: dict[str, int]
) -> None:
    fresh = [
        (subject, sequence) for subject, sequence in positions.items() if subject not in before
    ]
    if fresh:
        await driver.copy_records_to_table(
            "tracking", schema_name=schema, columns=["subject", "sequence"], records=fresh
        )
    moved = [
        (subject, sequence)
        for subject, sequence in positions.items()
        if subject in before and before[subject] != sequence
    ]
    if moved:
        await driver.execute(
            f'UPDATE "{schema}".tracking AS t SET sequence = p.sequence, applied_at = now() '
            "FROM unnest($1::uuid[], $2::int[]) AS p(subject, sequence) "
            "WHERE t.subject = p.subject",
            [subject for subject, _ in moved],
            [sequence for _, sequence in moved],
        )
