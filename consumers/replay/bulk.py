"""Applying a page of raw events to a shadow in bulk, or through the normal path when it must.

A page is prepared first, without the database (in a worker thread, while the previous
page is written): the fast path (a projection's BulkRows) reads the events' JSON without
building models; a page it refuses is decoded with the models instead. Writing it, the
fast path drops duplicates against the shadow's tracking records in one query, lets the
projection write its rows in bulk, and writes the tracking records with COPY (new users)
and one UPDATE (the others); the normal path applies the decoded batch with
ProjectionApplier, as a consumer would. Both give the same tables: the fast path refuses
(NotBulkableError, before it writes anything) whatever it does not handle exactly as the
models and the applier would.
"""

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.applier import BatchOutcome, Decoded, ProjectionApplier, decode
from consumers.projection import Projection
from consumers.replay.checks import check_data
from consumers.replay.raw import BulkRows, NotBulkableError, RawEvent, parse_raw
from consumers.replay.sources import SourcePage
from events import EVENT_TYPES, Envelope, MalformedEventError, envelope_from_json

logger = logging.getLogger(__name__)
# What a prepared page holds for an event of a type the projection does not handle.
ONLY_TRACKED = object()


@dataclass(frozen=True, slots=True)
class PreparedPage:
    """A page ready to write: raw events for the fast path, or decoded envelopes."""

    page: SourcePage
    # Each event with what BulkRows.prepare made of it (ONLY_TRACKED: a type not handled).
    raw: list[tuple[RawEvent, Any]] | None
    decoded: list[Decoded] | None


def prepare_page(page: SourcePage, projection: Projection) -> PreparedPage:
    """Parse and check a page for the fast path, or decode it; no database involved."""
    bulk = projection.bulk_rows()
    if bulk is not None and page.parsed is None:
        try:
            return PreparedPage(page, _prepare_raw(page, projection, bulk), None)
        except NotBulkableError as exc:
            logger.debug("%s: a page goes through the models: %s", projection.name, exc)
    return PreparedPage(page, None, [decode(e) for e in _envelopes(page)])


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
            decoded = [decode(e) for e in _envelopes(prepared.page)]
            return await applier.apply_decoded(conn, decoded)
    assert prepared.decoded is not None
    return await applier.apply_decoded(conn, prepared.decoded)


def _prepare_raw(
    page: SourcePage, projection: Projection, bulk: BulkRows
) -> list[tuple[RawEvent, Any]]:
    handles = {cls.type_name() for cls in projection.handles}
    prepared = []
    for raw in page.raw:
        event = parse_raw(raw)
        cls = EVENT_TYPES.get(event.type)
        if cls is None:
            raise NotBulkableError(f"unknown type {event.type}")
        if event.type in handles:
            if event.type not in bulk.handled:
                raise NotBulkableError(f"{event.type} has no fast path")
            prepared.append((event, bulk.prepare(event)))
            continue
        # Not handled: only tracked, but the applier would refuse it if it were malformed.
        check_data(cls, event.data)
        prepared.append((event, ONLY_TRACKED))
    return prepared


def _envelopes(page: SourcePage) -> list[Envelope]:
    if page.parsed is not None:
        return list(page.parsed)
    envelopes = []
    for raw in page.raw:
        try:
            envelopes.append(envelope_from_json(raw))
        except MalformedEventError as exc:
            # As a consumer would dead-letter it: the history is read past it.
            logger.warning("replay: skipping an entry that is not an envelope: %s", exc)
    return envelopes


async def _apply_bulk(
    conn: AsyncConnection,
    applier: ProjectionApplier,
    bulk: BulkRows,
    events: list[tuple[RawEvent, Any]],
) -> BatchOutcome:
    projection = applier.projection
    raw_conn = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw_conn.driver_connection
    schema = projection.schema
    rows = await driver.fetch(
        f'SELECT subject::text, sequence FROM "{schema}".tracking WHERE subject = ANY($1::uuid[])',
        list({event.subject: None for event, _ in events}),
    )
    before: dict[str, int] = {subject: sequence for subject, sequence in rows}
    positions = dict(before)
    outcome = BatchOutcome()
    due: list[tuple[RawEvent, Any]] = []
    for event, prepared in events:
        last = positions.get(event.subject, 0)
        if event.sequence <= last:
            outcome.duplicates += 1
            continue
        if event.sequence > last + 1:
            outcome.gaps += 1
            logger.warning(
                "%s: user %s jumps from sequence %d to %d (events missing)",
                projection.name,
                event.subject,
                last,
                event.sequence,
            )
        if prepared is not ONLY_TRACKED:
            due.append((event, prepared))
            outcome.applied += 1
        else:
            outcome.skipped += 1
        positions[event.subject] = event.sequence
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
