"""The in-database replay: the shadow built by SQL from the event log, no event read by Python.

When the event log (PostgresEventLog's outbox) lives in the very database of the
projection (`in_database_log` proves it) and the projection offers `SqlRows`, the log is
read in pages, ranges of positions up to its commit-safe head. Two more connections check
the next pages ahead, each into a stage table, every envelope and its data as the models
would read them, each user's events numbered and their sequence before the page looked up
in the log (consumers/replay/sql_checks.py, consumers/replay/staging.py). The page's transaction
then takes the page from that table: if every event passed, every user's sequences
follow on from their last one with no gap or repeat, and the projection's SqlRows takes
the page, it writes the rows set-based, and the checkpoint follows in the same
transaction; the tracking records too, except on a fresh shadow's first pass, which
writes them once at its end (consumers/replay/deferred.py). Anything else and the same
page goes through the client path (consumers/replay/bulk.py) in that transaction:
detected, never guessed.
"""

import asyncio
import logging
from functools import cache

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.projection import Projection
from consumers.replay.build import BuildState
from consumers.replay.bulk import apply_page
from consumers.replay.deferred import defers, settle
from consumers.replay.driver import asyncpg_of
from consumers.replay.prepare import prepare_page
from consumers.replay.progress import ReplayProgress
from consumers.replay.shadow import save_checkpoint
from consumers.replay.sources import ReplaySource, SourcePage
from consumers.replay.sql_rows import SqlRows
from consumers.replay.staging import STAGE_TABLES, StagedPage, stage_ddl, stage_pages
from infra.event_log import PostgresEventLog

logger = logging.getLogger(__name__)

# Per page's transaction. A page's rows meet the shadow's tables (hundreds of thousands of
# rows) by index, a few thousand lookups; the planner, not knowing the staged page, would
# rather read those tables whole for each page, and compile the statements (JIT) for it.
# A page's grouping by user fits in memory (the default work_mem spills it to disk).
_SETTINGS = (
    "SELECT set_config('synchronous_commit', 'off', true), set_config('jit', 'off', true), "
    "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), "
    "set_config('work_mem', '64MB', true)"
)


async def in_database_log(
    engine: AsyncEngine, projection: Projection, source: ReplaySource
) -> PostgresEventLog | None:
    """The log, if `source` is a PostgreSQL event log in `engine`'s own database that
    `engine`'s role may read, and `projection` has SqlRows; None: the client build runs."""
    log = getattr(source, "log", None)
    if projection.sql_rows() is None or source.kind != "log":
        return None
    if not isinstance(log, PostgresEventLog):
        return None
    async with engine.connect() as conn:
        driver = await asyncpg_of(conn)
        same = await log.shares_database(driver)
        # The log's URL may name another role (one that may read the outbox) than ours.
        readable = same and await driver.fetchval(
            "SELECT CASE WHEN has_schema_privilege($1, 'USAGE') "
            "THEN has_table_privilege($2, 'SELECT') ELSE false END",
            log.schema,
            f"{log.schema}.outbox",
        )
    return log if readable else None


async def sql_build_pass(
    engine: AsyncEngine,
    applier: ProjectionApplier,
    log: PostgresEventLog,
    state: BuildState,
    *,
    batch_size: int,
    progress: ReplayProgress,
) -> int:
    """Build from `state.position` to the log's commit-safe head as it is now; events read.

    As build_pass: each page commits with its checkpoint (the position after it), the
    commit not waiting for the WAL flush. The pages are checked ahead on other
    connections (consumers/replay/staging.py).
    """
    rows = applier.projection.sql_rows()
    assert rows is not None
    schema = applier.projection.schema
    head = await log.head()
    events_before = state.events
    ready: asyncio.Queue[StagedPage | BaseException | None] = asyncio.Queue()
    free: asyncio.Queue[str] = asyncio.Queue()
    for table in STAGE_TABLES:
        free.put_nowait(table)
    async with engine.connect() as conn:
        driver = await asyncpg_of(conn)
        # Before the first transaction begins: these stay for the whole pass.
        for statement in stage_ddl(schema):
            await driver.execute(statement)
        start = int(state.position or 0)
        fresh = start == 0 and state.events == 0
        deferred = await defers(driver, schema, log.schema, fresh=fresh)
        stager = asyncio.create_task(
            stage_pages(engine, log, schema, (start, head), batch_size, free, ready)
        )
        try:
            while (page := await ready.get()) is not None:
                if isinstance(page, BaseException):
                    raise page
                deferred = await _write_page(
                    conn, applier, rows, log, state, page, deferred=deferred
                )
                free.put_nowait(page.table)
                progress.advance(page.end - page.start, None)
        finally:
            stager.cancel()
            await asyncio.gather(stager, return_exceptions=True)
    return state.events - events_before


async def _write_page(
    conn: AsyncConnection,
    applier: ProjectionApplier,
    rows: SqlRows,
    log: PostgresEventLog,
    state: BuildState,
    page: StagedPage,
    *,
    deferred: bool,
) -> bool:
    """Apply a staged page in one transaction, with its checkpoint; whether still deferred."""
    schema = applier.projection.schema
    async with conn.begin():
        await conn.execute(text(_SETTINGS))
        outcome, events, deferred = await _apply_range(
            conn, applier, rows, log.schema, state, page, deferred=deferred
        )
        await save_checkpoint(conn, schema, str(page.end), state.events + events)
    state.position, state.events = str(page.end), state.events + events
    state.outcome.add(outcome)
    return deferred


async def _apply_range(
    conn: AsyncConnection,
    applier: ProjectionApplier,
    rows: SqlRows,
    log_schema: str,
    state: BuildState,
    page: StagedPage,
    *,
    deferred: bool,
) -> tuple[BatchOutcome, int, bool]:
    """Apply the log's events in the page to the shadow; what happened, events read, and
    whether the tracking records are still deferred."""
    driver = await asyncpg_of(conn)
    schema = applier.projection.schema
    table = f'"{schema}".{page.table}'
    if not deferred:  # the records say where each user is, not the log
        await driver.execute(_tracked_last(schema, table))
    malformed, unordered, events, handled = await driver.fetchrow(
        "SELECT count(*) FILTER (WHERE NOT ok), "
        "count(*) FILTER (WHERE ok AND sequence <> coalesce(last, 0) + n), "
        f"count(*), count(*) FILTER (WHERE type = ANY($1::text[])) FROM {table}",
        list(rows.handled),
    )
    why: str | None = None
    if malformed:
        why = f"{malformed} events the SQL checks do not take"
    elif unordered:
        why = f"{unordered} events whose sequence does not follow the user's last"
    else:
        why = await rows.refused(driver, schema, table)
    if why is not None:
        logger.debug("%s: a page goes through the models: %s", applier.projection.name, why)
        state.handed_over += 1
        if deferred:  # the models read and write the records: they must be there
            await settle(driver, schema, log_schema, page.start)
        outcome, read = await _through_models(conn, applier, log_schema, page.start, page.end)
        return outcome, read, False
    await rows.write(driver, schema, table)
    if not deferred:
        await driver.execute(_track(schema, table))
    return BatchOutcome(applied=handled, skipped=events - handled), events, deferred


async def _through_models(
    conn: AsyncConnection, applier: ProjectionApplier, log_schema: str, start: int, end: int
) -> tuple[BatchOutcome, int]:
    """The page read as the existing path reads it, and applied by that path."""
    driver = await asyncpg_of(conn)
    found = await driver.fetch(
        f"SELECT payload::text FROM {log_schema}.outbox WHERE id > $1 AND id <= $2 ORDER BY id",
        start,
        end,
    )
    page = SourcePage([row[0] for row in found], None, str(end), end - start)
    prepared = await asyncio.to_thread(prepare_page, page, applier.projection)
    return await apply_page(conn, applier, prepared), len(found)


@cache
def _tracked_last(schema: str, table: str) -> str:
    return (
        f"UPDATE {table} AS s SET last = (SELECT t.sequence "
        f'FROM "{schema}".tracking t WHERE t.subject = s.subject)'
    )


@cache
def _track(schema: str, table: str) -> str:
    # New users inserted, the others updated: no speculative insertion (ON CONFLICT).
    return (
        f"WITH moved AS (SELECT subject, max(sequence) AS sequence, bool_or(last IS NULL) AS new "
        f"FROM {table} GROUP BY subject), "
        f'added AS (INSERT INTO "{schema}".tracking (subject, sequence) '
        "SELECT subject, sequence FROM moved WHERE new) "
        f'UPDATE "{schema}".tracking AS t SET sequence = m.sequence, applied_at = now() '
        "FROM moved m WHERE t.subject = m.subject AND NOT m.new"
    )
