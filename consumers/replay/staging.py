"""Checking the log's pages ahead of the in-database build, on a connection of their own.

The checks (consumers/replay/sql_checks.py) are most of the in-database build's work and
depend on nothing the build writes, so a second connection (a second PostgreSQL process,
so another core) checks page n + 1 into `<shadow>.replay_stage`, an unlogged table, while
the build writes page n. The build reads the page from there, joins it with its tracking
records and deletes it in the page's transaction. What is staged is derived from the log,
never the only copy: a pass empties the table first, so pages a crash left there are gone.
"""

import asyncio
from dataclasses import dataclass
from functools import cache

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay.sql_checks import checked_events
from infra.event_log import PostgresEventLog

STAGE_TABLE = "replay_stage"
# Pages checked ahead of the build, at most (each waits in memory as its bounds only).
AHEAD = 1


@dataclass(frozen=True, slots=True)
class StagedPage:
    """The log's events in (start, end], checked into the stage table under `end`."""

    start: int
    end: int


def stage_ddl(schema: str) -> list[str]:
    """The stage table in the shadow `schema`, empty."""
    table = f'"{schema}".{STAGE_TABLE}'
    return [
        f"CREATE UNLOGGED TABLE IF NOT EXISTS {table} (page bigint NOT NULL, "
        "pos bigint NOT NULL, ok bool NOT NULL, subject uuid NOT NULL, sequence int NOT NULL, "
        "type text, data jsonb)",
        # Read and deleted by page; a page's rows share their key (deduplicated in the index).
        f"CREATE INDEX IF NOT EXISTS {STAGE_TABLE}_page ON {table} (page)",
        f"TRUNCATE {table}",
    ]


@cache
def _stage(log_schema: str, schema: str) -> str:
    return (
        f'INSERT INTO "{schema}".{STAGE_TABLE} SELECT $2, id, ok, subject, sequence, type, data '
        f"FROM ({checked_events(log_schema)}) c"
    )


async def stage_pages(
    engine: AsyncEngine,
    log: PostgresEventLog,
    schema: str,
    start: int,
    head: int,
    batch_size: int,
    ready: "asyncio.Queue[StagedPage | BaseException | None]",
) -> None:
    """Check the log's pages from `start` to `head` into the stage table, one at a time.

    Each page is committed (on its own: nothing else is in that transaction), then its
    bounds go to `ready`; None follows the last, an exception a failure.
    """
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            while start < head:
                bound = await driver.fetchval(
                    f"SELECT id FROM {log.schema}.outbox WHERE id > $1 AND id <= $2 "
                    "ORDER BY id OFFSET $3 LIMIT 1",
                    start,
                    head,
                    batch_size - 1,
                )
                end = head if bound is None else int(bound)
                async with driver.transaction():
                    # A lost staged page is checked again: no need to wait for the WAL.
                    await driver.execute(
                        "SELECT set_config('jit', 'off', true), "
                        "set_config('synchronous_commit', 'off', true)"
                    )
                    await driver.execute(_stage(log.schema, schema), start, end)
                await ready.put(StagedPage(start, end))
                start = end
        await ready.put(None)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the build raises it, in its own task
        await ready.put(exc)
