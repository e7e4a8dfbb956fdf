"""Checking the log's pages ahead of the in-database build, on connections of their own.

The checks (consumers/replay/sql_checks.py) are most of the in-database build's work and
depend on nothing the build writes, so two more connections (PostgreSQL processes, so
other cores) check pages n + 1 and n + 2 while the build writes page n. Each page is
checked into a stage table of its own, `<shadow>.replay_stage_<i>` (unlogged, no index),
which is then the very page table the projection's SqlRows reads
(consumers/replay/sql_rows.py): nothing is copied again. A checker takes a free table,
then cuts the next page; the build takes the pages in log order, and gives a table back
only after it committed the page the table held. What is staged is derived from the log,
never the only copy: a pass empties the tables first, so pages a crash left there are gone.

Beside the checks, each row gets the user's rank on the page (`n`), their events on it
(`m`) and `last`, the sequence the user's events before the page end at, as the log
proves it: the event one sequence before the user's first on the page, found at a position
before the page (an index lookup in the log's unique (subject, sequence) index). That is
the user's tracked sequence too as long as every earlier page was applied whole (the
build's deferred tracking, consumers/replay/deferred.py); otherwise the build overwrites
it from the tracking records.
"""

import asyncio
from dataclasses import dataclass
from functools import cache, partial

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay.driver import asyncpg_of
from consumers.replay.sql_checks import checked_events
from consumers.replay.stamp import current_stamps
from infra.event_log import PostgresEventLog
from infra.workers import until_one_fails

STAGE_PREFIX = "replay_stage_"
# Connections checking pages at once: the checks are the larger half of the work, and two
# checkers beside the build keep both cores of a small machine busy.
CHECKERS = 2
# A table for each checker's page and one for the page the build writes.
STAGE_TABLES = [f"{STAGE_PREFIX}{i}" for i in range(CHECKERS + 1)]


@dataclass(frozen=True, slots=True)
class StagedPage:
    """The log's events in (start, end], checked into the stage table `table`."""

    start: int
    end: int
    table: str


def stage_ddl(schema: str) -> list[str]:
    """The stage tables in the shadow `schema`, empty."""
    statements = []
    for name in STAGE_TABLES:
        table = f'"{schema}".{name}'
        statements += [
            f"CREATE UNLOGGED TABLE IF NOT EXISTS {table} (pos bigint NOT NULL, "
            "ok bool NOT NULL, subject uuid NOT NULL, sequence int NOT NULL, type text, "
            "data jsonb, n int NOT NULL, m int NOT NULL, last int)",
            f"TRUNCATE {table}",
        ]
    return statements


async def has_stamps(conn: asyncpg.Connection, log_schema: str) -> bool:
    """Whether the log's rows have the writer's stamp column (consumers/replay/stamp.py)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) "
        "AND attname = 'contract' AND NOT attisdropped)",
        f"{log_schema}.outbox",
    )
    return found


@cache
def _stage(log_schema: str, schema: str, table: str, stamped: bool) -> str:
    stamps = current_stamps() if stamped else ()
    # `first`: the sequence of the user's first event on the page. A scalar subquery, one
    # index lookup a row: the planner would turn EXISTS into a hash of the log so far.
    return (
        f'INSERT INTO "{schema}".{table} '
        "SELECT id, ok, subject, sequence, type, data, n, m, "
        "CASE WHEN first > 1 THEN CASE WHEN (SELECT o.id FROM "
        f"{log_schema}.outbox o WHERE o.subject = r.subject AND o.sequence = r.first - 1) "
        "<= $1 THEN first - 1 END END "
        "FROM (SELECT c.*, row_number() OVER w AS n, count(*) OVER (PARTITION BY subject) AS m, "
        f"first_value(sequence) OVER w AS first FROM ({checked_events(log_schema, stamps)}) c "
        "WINDOW w AS (PARTITION BY subject ORDER BY id)) r"
    )


async def stage_pages(
    engine: AsyncEngine,
    log: PostgresEventLog,
    schema: str,
    bounds: tuple[int, int],
    batch_size: int,
    free: "asyncio.Queue[str]",
    ready: "asyncio.Queue[StagedPage | BaseException | None]",
) -> None:
    """Check the log's pages in `bounds` (start, head] into the stage tables, in order.

    CHECKERS connections check pages at once. Each takes a table from `free` (the build
    gives it back after its commit) before it cuts the next page, so the page the build
    waits for always has one; each page is committed on its own, then goes to `ready` in
    log order; None follows the last, an exception a failure.
    """
    pages = _Pages(*bounds, batch_size)
    checker = partial(_check_pages, engine, log, schema, pages, free, ready)
    try:
        # A failing checker lets the other finish and hand on its page first: the build
        # gets every page before the failed one, and a resume goes on from there.
        await until_one_fails(asyncio.Event(), [checker] * CHECKERS)
        await ready.put(None)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the build raises it, in its own task
        await ready.put(exc)


class _Pages:
    """The log's pages in (start, head], cut one after another, delivered in that order."""

    def __init__(self, start: int, head: int, size: int) -> None:
        self.start, self.head, self.size = start, head, size
        self._cutting = asyncio.Lock()
        self._cut = 0
        self._done: dict[int, StagedPage] = {}
        self._delivered = 0

    async def cut(self, conn: asyncpg.Connection, log_schema: str) -> tuple[int, int, int] | None:
        """The next page (its number, start, end), None after the last."""
        async with self._cutting:  # one cut at a time: each starts where the last ended
            if self.start >= self.head:
                return None
            bound = await conn.fetchval(
                f"SELECT id FROM {log_schema}.outbox WHERE id > $1 AND id <= $2 "
                "ORDER BY id OFFSET $3 LIMIT 1",
                self.start,
                self.head,
                self.size - 1,
            )
            end = self.head if bound is None else int(bound)
            page = (self._cut, self.start, end)
            self._cut, self.start = self._cut + 1, end
            return page

    def deliver(
        self,
        number: int,
        page: StagedPage,
        ready: "asyncio.Queue[StagedPage | BaseException | None]",
    ) -> None:
        """Hand `page` on (`ready` has no bound) once every page before it has been."""
        self._done[number] = page
        while self._delivered in self._done:
            ready.put_nowait(self._done.pop(self._delivered))
            self._delivered += 1


async def _check_pages(
    engine: AsyncEngine,
    log: PostgresEventLog,
    schema: str,
    pages: _Pages,
    free: "asyncio.Queue[str]",
    ready: "asyncio.Queue[StagedPage | BaseException | None]",
    halt: asyncio.Event,
) -> None:
    async with engine.connect() as conn:
        driver = await asyncpg_of(conn)
        stamped = await has_stamps(driver, log.schema)
        while True:
            table = await free.get()
            cut = None if halt.is_set() else await pages.cut(driver, log.schema)
            if cut is None:
                free.put_nowait(table)
                return
            number, start, end = cut
            async with driver.transaction():
                # A lost staged page is checked again: no need to wait for the WAL.
                await driver.execute(
                    "SELECT set_config('jit', 'off', true), "
                    "set_config('synchronous_commit', 'off', true), "
                    "set_config('work_mem', '64MB', true)"
                )
                await driver.execute(f'TRUNCATE "{schema}".{table}')
                await driver.execute(_stage(log.schema, schema, table, stamped), start, end)
            pages.deliver(number, StagedPage(start, end, table), ready)
