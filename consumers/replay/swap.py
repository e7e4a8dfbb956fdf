"""The swap: catch the shadow up with the live projection, then trade their tables atomically.

One transaction. It first locks the live tables and the live tracking table in EXCLUSIVE
mode: writers (the live consumer, a token admission) wait, readers go on. Inside it, the
shadow reads the rest of the source, then takes every event the live consumer applied
beyond the shadow (the tracking tables compared per user, the missing events read from
the source by user), then the projection carries over what only the live view holds.
Last, `ALTER TABLE ... SET SCHEMA` moves the live tables to `<name>__old` and the shadow's
into `<name>`: that needs ACCESS EXCLUSIVE, which readers queue behind, so it is taken with
a short lock_timeout and retried (readers never queue behind it for longer than that),
and the commit follows at once. Readers that queued read the new tables afterwards.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.projection import Projection
from consumers.replay.build import BuildState
from consumers.replay.bulk import apply_page
from consumers.replay.prepare import prepare_page
from consumers.replay.shadow import ReplayError, old_schema
from consumers.replay.sources import ReplaySource
from events import Envelope

logger = logging.getLogger(__name__)
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True, slots=True)
class SwapTimings:
    """How the swap went: users caught up from the live view, tries, the readers' wait."""

    caught_up_users: int
    attempts: int
    # From the last request for ACCESS EXCLUSIVE to the commit: how long readers queued.
    exclusive_seconds: float


async def swap(
    engine: AsyncEngine,
    live: Projection,
    shadow: Projection,
    source: ReplaySource,
    state: BuildState,
    *,
    batch_size: int,
    lock_timeout_ms: int = 50,
    attempts: int = 100,
) -> SwapTimings:
    """Catch up and swap in one transaction, then drop the old tables; see the module."""
    applier = ProjectionApplier(shadow)
    moved = [t.name for t in shadow.rebuilt_tables] + [applier.tracking.name]
    # The tracking table first, as a consumer takes them (its records, then the view):
    # in the other order, a consumer between the two would deadlock with the swap.
    locked = [applier.tracking.name, *moved[:-1]]
    live_tables = ", ".join(f'"{live.name}"."{name}"' for name in locked)
    async with engine.connect() as conn:
        async with conn.begin():
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{old_schema(live.name)}"'))
            await conn.execute(text(f"LOCK TABLE {live_tables} IN EXCLUSIVE MODE"))
            async for page in source.pages(state.position, batch_size):
                prepared = prepare_page(page, shadow)
                state.outcome.add(await apply_page(conn, applier, prepared))
                state.position = page.position
            caught_up = await _catch_up(conn, applier, live, source, state.outcome)
            await shadow.carry_over(conn)
            tries, began = await _move(
                conn, live.name, shadow.schema, moved, lock_timeout_ms, attempts
            )
            await conn.execute(text(f'DROP SCHEMA "{shadow.schema}" CASCADE'))
        exclusive = time.monotonic() - began
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{old_schema(live.name)}" CASCADE'))
    return SwapTimings(caught_up, tries, exclusive)


async def _catch_up(
    conn: AsyncConnection,
    applier: ProjectionApplier,
    live: Projection,
    source: ReplaySource,
    outcome: BatchOutcome,
) -> int:
    """Apply to the shadow each user's events the live consumer applied and it has not."""
    shadow = applier.projection.schema
    behind_query = text(
        f'SELECT l.subject, coalesce(s.sequence, 0) AS sequence FROM "{live.name}".tracking l '
        f'LEFT JOIN "{shadow}".tracking s ON s.subject = l.subject '
        "WHERE l.sequence > coalesce(s.sequence, 0)"
    )
    behind = (await conn.execute(behind_query)).all()
    if not behind:
        return 0
    missing: list[Envelope] = []
    for subject, sequence in behind:
        found = await source.events_of(subject, sequence)
        if found is None:
            raise ReplayError(
                f"the live {live.name} applied events of {len(behind)} users that the "
                f"{source.kind} no longer holds (trimmed, or healed from the log): "
                "replay from --source log or --source feed"
            )
        missing.extend(found)
    outcome.add(await applier.apply_batch(conn, missing))
    still = (await conn.execute(behind_query)).all()
    if still:
        raise ReplayError(f"{len(still)} users of the live {live.name} are ahead of the log")
    logger.info("replay %s: caught up %d users from the live view", live.name, len(behind))
    return len(behind)


async def _move(
    conn: AsyncConnection,
    live: str,
    shadow: str,
    tables: list[str],
    lock_timeout_ms: int,
    attempts: int,
) -> tuple[int, float]:
    """Move the live tables out and the shadow's in; the tries it took, when the last began."""
    old = old_schema(live)
    locked = ", ".join(f'"{live}"."{name}"' for name in tables)
    for attempt in range(1, attempts + 1):
        began = time.monotonic()
        savepoint = await conn.begin_nested()
        try:
            await conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
            await conn.execute(text(f"LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE"))
            for name in tables:
                await conn.execute(text(f'ALTER TABLE "{live}"."{name}" SET SCHEMA "{old}"'))
                await conn.execute(text(f'ALTER TABLE "{shadow}"."{name}" SET SCHEMA "{live}"'))
            await savepoint.commit()
            return attempt, began
        except DBAPIError as exc:
            if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                raise
            await savepoint.rollback()
            # Let the readers that queued behind the request through, then try again.
            await asyncio.sleep(lock_timeout_ms / 1000)
    raise ReplayError(
        f"could not take the tables of {live} for the swap in {attempts} tries: "
        "long transactions hold them; the shadow is kept, run again with --resume"
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
