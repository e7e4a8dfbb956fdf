"""Pruning the directory's tombstones once no token of their user can verify any more.

A tombstone (`directory.deleted_users`) keeps a deleted user's still-valid token from
bringing the member back (members.py). User ids are never reused, so once every token the
user could hold has expired, the tombstone guards nothing: it goes, in batches of one
statement each (SKIP LOCKED: a deletion being recorded is never waited for).
"""

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from downstream_examples.lazy_directory.tables import SCHEMA

_PRUNE = text(
    f"""
    WITH doomed AS (
        SELECT user_id FROM "{SCHEMA}".deleted_users
        WHERE deleted_at < now() - make_interval(secs => :age)
        LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    DELETE FROM "{SCHEMA}".deleted_users d USING doomed WHERE d.user_id = doomed.user_id
    """
)


async def prune_tombstones(engine: AsyncEngine, *, keep: timedelta, batch: int = 1000) -> int:
    """Delete the tombstones older than `keep`; how many went (none before the tables exist)."""
    async with engine.connect() as conn:
        table = f'"{SCHEMA}".deleted_users'
        if await conn.scalar(text("SELECT to_regclass(:t)"), {"t": table}) is None:
            return 0
    pruned = 0
    while True:
        async with engine.begin() as conn:
            result = await conn.execute(_PRUNE, {"age": keep.total_seconds(), "batch": batch})
        pruned += result.rowcount
        if result.rowcount < batch:
            return pruned
