"""Deferred tracking records: a fresh shadow's first pass writes them once, at its end.

Keeping a tracking record per user up to date page by page is a third of the in-database
build's writes (an insert per new user, an update per user seen again). While every page
of a fresh shadow has been applied whole (no event refused, every user's sequences
following on), the records it would hold are a function of the log: each user's highest
sequence at or before the checkpoint. So the first pass leaves the tracking table empty,
marks the shadow (`<shadow>.replay_deferred_tracking`, created with the first page),
checks each page's sequences against the log instead (consumers/replay/staging.py), and
`settle` writes every record in one statement: at the end of the pass, or before a page
must go through the models (which read and write the records), in that page's
transaction. A resumed replay finds the mark and goes on the same way.

This holds only for a log whose (subject, sequence) pairs are unique, as the outbox's
constraint makes them (`unique_sequences` proves it from the catalog): otherwise a
repeated sequence could pass for the next one, and the tracking is kept page by page.
The mark is unlogged like the rest of the shadow (consumers/replay/durability.py): a
server crash empties the checkpoint with it, and the build starts over.
"""

from functools import cache

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay.driver import asyncpg_of

MARK_TABLE = "replay_deferred_tracking"


async def unique_sequences(conn: asyncpg.Connection, log_schema: str) -> bool:
    """Whether `<log_schema>.outbox` has a unique index on (subject, sequence), no more."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = to_regclass($1) "
        "AND i.indisunique AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL "
        "AND i.indnatts = 2 AND (SELECT array_agg(a.attname::text ORDER BY a.attname) "
        "FROM pg_attribute a WHERE a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey::int2[])) = ARRAY['sequence', 'subject'])",
        f"{log_schema}.outbox",
    )
    return found


async def is_deferred(conn: asyncpg.Connection, schema: str) -> bool:
    """Whether the shadow `schema`'s tracking records are deferred."""
    found: bool = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".{MARK_TABLE}'
    )
    return found


async def deferred_tracking(engine: AsyncEngine, schema: str) -> bool:
    """is_deferred, on a connection of `engine`'s."""
    async with engine.connect() as conn:
        return await is_deferred(await asyncpg_of(conn), schema)


async def defers(conn: asyncpg.Connection, schema: str, log_schema: str, *, fresh: bool) -> bool:
    """Whether a pass defers the tracking records: it did, or may start to now.

    It may on a `fresh` shadow (nothing applied, no checkpoint) whose tracking table is
    empty, from a log with unique sequences; then the mark is made.
    """
    if await is_deferred(conn, schema):
        return True
    if not fresh or not await unique_sequences(conn, log_schema):
        return False
    if await conn.fetchval(f'SELECT EXISTS (SELECT FROM "{schema}".tracking)'):
        return False
    await conn.execute(f'CREATE UNLOGGED TABLE "{schema}".{MARK_TABLE} ()')
    return True


async def settle(conn: asyncpg.Connection, schema: str, log_schema: str, position: int) -> None:
    """Write the tracking records the log gives up to `position`, and drop the mark.

    In the caller's transaction, the one that commits the checkpoint at `position` or the
    page that follows it.
    """
    await conn.execute("SELECT set_config('work_mem', '256MB', true)")
    await conn.execute(_settle_sql(schema, log_schema), position)
    await conn.execute(f'DROP TABLE "{schema}".{MARK_TABLE}')


async def settle_pass(engine: AsyncEngine, schema: str, log_schema: str, position: int) -> None:
    """After a pass: write the deferred tracking records up to `position`, if deferred."""
    async with engine.connect() as conn:
        driver = await asyncpg_of(conn)
        if await is_deferred(driver, schema):
            async with driver.transaction():
                await settle(driver, schema, log_schema, position)


@cache
def _settle_sql(schema: str, log_schema: str) -> str:
    # Each user's highest sequence is read from the (subject, sequence) index alone, in key
    # order: no sort, no hash of a million users, and the tracking table's primary key is
    # filled left to right. The index does not hold the position, so the users with an
    # event after `position` (few: none at the end of a pass, but for events committed
    # since) are left out there and taken from their events up to it, by the same index.
    outbox = f"{log_schema}.outbox"
    return (
        f"WITH late AS MATERIALIZED (SELECT DISTINCT subject FROM {outbox} WHERE id > $1) "
        f'INSERT INTO "{schema}".tracking (subject, sequence) '
        f"SELECT subject, max(sequence) FROM {outbox} o "
        "WHERE NOT EXISTS (SELECT FROM late l WHERE l.subject = o.subject) GROUP BY subject "
        f"UNION ALL SELECT subject, max(sequence) FROM {outbox} "
        "WHERE subject IN (SELECT subject FROM late) AND id <= $1 GROUP BY subject"
    )
