"""The shadow's tables while the bulk build runs: unlogged and without secondary indexes.

Most of a build's writing is WAL: every heap row and every index entry of the shadow, a
second time. A fresh shadow's tables (the rebuilt ones, the tracking table and the
checkpoint) are therefore made UNLOGGED, and its secondary indexes (neither unique nor
behind a constraint: no key the fold looks rows up by) are dropped, their definitions kept
in `<shadow>.replay_deferred_indexes`. Once the bulk build ends (before the catch-up and
the swap) `make_durable` sets the tables LOGGED, one sequential write each, and builds the
deferred indexes: in one transaction, or in parts (the rebuilt tables beside the tracking
table, on two connections) with the checkpoint's table always last.

A PostgreSQL crash empties every unlogged table, the checkpoint's with the rest: a resumed
replay then finds no checkpoint and starts over, consistently (never a checkpoint that
names rows the crash took). A replay whose client died (the server did not) finds its
unlogged shadow as it left it and goes on; `make_durable` after it is a no-op when an
earlier run already made the shadow durable.
"""

from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.applier import ProjectionApplier
from consumers.projection import Projection

CHECKPOINT_TABLE = "replay_checkpoint"
DEFERRED_TABLE = "replay_deferred_indexes"
# For the deferred indexes' sorts: one build at a time, in one session.
INDEX_MEMORY = "256MB"


def durable_tables(shadow: Projection) -> list[str]:
    """The shadow's tables, referenced ones before those that reference them."""
    tracking = ProjectionApplier(shadow).tracking.name
    return [t.name for t in shadow.rebuilt_tables] + [tracking, CHECKPOINT_TABLE]


async def make_lean(conn: AsyncConnection, shadow: Projection) -> None:
    """Make a fresh, empty shadow's tables unlogged and defer its secondary indexes."""
    schema = shadow.schema
    tables = durable_tables(shadow)
    await conn.execute(
        text(f'CREATE UNLOGGED TABLE "{schema}".{DEFERRED_TABLE} (definition text NOT NULL)')
    )
    found = await conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = ANY(:tables) "
            "AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion "
            "AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
        ),
        {"schema": schema, "tables": tables},
    )
    for name, definition in found.all():
        await conn.execute(
            text(f'INSERT INTO "{schema}".{DEFERRED_TABLE} VALUES (:definition)'),
            {"definition": definition},
        )
        # regclass text is quoted as needed and schema-qualified (not on the search_path).
        await conn.execute(text(f"DROP INDEX {name}"))
    # Those that reference others first: a logged table may not reference an unlogged one.
    for table in reversed(tables):
        await conn.execute(text(f'ALTER TABLE "{schema}"."{table}" SET UNLOGGED'))


async def make_durable(
    engine: AsyncEngine, shadow: Projection, *, only: Literal["rebuilt", "tracking"] | None = None
) -> bool:
    """Set the shadow's unlogged tables LOGGED and build its deferred indexes; whether any.

    LOGGED first: SET LOGGED rewrites the table with its indexes, so an index built before
    it would be built twice. `only="rebuilt"`: the rebuilt tables and the deferred indexes
    (the tracking table has none), while the tracking records may still be written
    (consumers/replay/deferred.py); `only="tracking"`: the tracking table, once they are.
    The two run at once, on two connections; a call without `only` then does the rest.
    """
    schema = shadow.schema
    tables = durable_tables(shadow)
    if only == "rebuilt":
        tables = [t.name for t in shadow.rebuilt_tables]
    elif only == "tracking":
        tables = [ProjectionApplier(shadow).tracking.name]
    async with engine.begin() as conn:
        unlogged = set(
            (
                await conn.execute(
                    text(
                        "SELECT c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = :schema AND c.relname = ANY(:tables) "
                        "AND c.relpersistence = 'u'"
                    ),
                    {"schema": schema, "tables": tables},
                )
            ).scalars()
        )
        deferred = None
        if only != "tracking":
            found = f"SELECT to_regclass('\"{schema}\".{DEFERRED_TABLE}')"
            deferred = await conn.scalar(text(found))
        if not unlogged and deferred is None:
            return False
        await conn.execute(text(f"SET LOCAL maintenance_work_mem = '{INDEX_MEMORY}'"))
        for table in tables:
            if table in unlogged:
                await conn.execute(text(f'ALTER TABLE "{schema}"."{table}" SET LOGGED'))
        if deferred is not None:
            definitions = (
                await conn.execute(text(f'SELECT definition FROM "{schema}".{DEFERRED_TABLE}'))
            ).scalars()
            for definition in list(definitions):
                await conn.execute(text(definition))
            await conn.execute(text(f'DROP TABLE "{schema}".{DEFERRED_TABLE}'))
    return True
