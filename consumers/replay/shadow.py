"""The shadow schema a replay builds into, its checkpoint, and what a finished one leaves behind.

A replay of projection `name` builds `<name>__replay` (its rebuilt tables and tracking
records, plus `replay_checkpoint`: the source position after the last committed batch),
then swaps those tables into `name` and the live ones out into `<name>__old`, which is
dropped afterwards. A fresh shadow is built unlogged, its checkpoint too, and without its
secondary indexes (consumers/replay/durability.py). Only one replay of a projection runs at
a time (an advisory lock held for the whole run).
"""

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.applier import ProjectionApplier
from consumers.errors import ConsumerError
from consumers.projection import Projection
from consumers.replay.durability import make_lean

SHADOW_SUFFIX = "__replay"
OLD_SUFFIX = "__old"


class ReplayError(ConsumerError):
    """A replay cannot go on: what it found, and what to do about it."""


def shadow_schema(name: str) -> str:
    """The schema a replay of projection `name` builds into."""
    return f"{name}{SHADOW_SUFFIX}"


def old_schema(name: str) -> str:
    """The schema the live tables of `name` move to at the swap, dropped afterwards."""
    return f"{name}{OLD_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where an unfinished replay stood after its last committed batch."""

    source: str
    position: str
    events: int


async def lock_replay(conn: AsyncConnection, name: str) -> None:
    """Take the replay lock of `name` on `conn`'s session, or raise ReplayError."""
    got = await conn.scalar(
        text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": f"userbus.replay.{name}"}
    )
    await conn.commit()
    if not got:
        raise ReplayError(f"another replay of {name} is running")


async def unlock_replay(conn: AsyncConnection, name: str) -> None:
    """Release the replay lock (the connection goes back to a pool that keeps sessions)."""
    await conn.execute(
        text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": f"userbus.replay.{name}"}
    )
    await conn.commit()


async def ensure_live(engine: AsyncEngine, live: Projection) -> None:
    """Create the live tables if any is missing; leave existing ones alone.

    The swap locks and moves them, so they must exist. A projection's setup may run DDL
    that takes ACCESS EXCLUSIVE (ALTER TABLE), which readers would queue behind: when
    every table is there, it is not run.
    """
    applier = ProjectionApplier(live)
    names = [f'"{t.schema}"."{t.name}"' for t in live.metadata.sorted_tables]
    names.append(f'"{applier.tracking.schema}"."{applier.tracking.name}"')
    async with engine.begin() as conn:
        missing = await conn.scalar(
            text(
                "SELECT count(*) FROM unnest(CAST(:names AS text[])) n WHERE to_regclass(n) IS NULL"
            ),
            {"names": names},
        )
        if missing:
            await applier.setup(conn)


async def prepare_shadow(
    engine: AsyncEngine, shadow: Projection, source_kind: str, *, resume: bool
) -> Checkpoint:
    """A shadow schema ready to build into, and the checkpoint to go on from.

    With `resume`, an unfinished replay's shadow is kept and its checkpoint returned (from
    the same kind of source only: positions of another are meaningless). Otherwise, or
    when there is nothing to resume, any leftover is dropped and the build starts over.
    """
    schema = shadow.schema
    async with engine.begin() as conn:
        found = await _read_checkpoint(conn, schema)
        if resume and found is not None:
            if found.source != source_kind:
                raise ReplayError(
                    f"the interrupted replay of {shadow.name} read from the {found.source}; "
                    f"resume it with --source {found.source}, or start over without --resume"
                )
            return found
        await drop_leftovers(conn, shadow.name)
        await ProjectionApplier(shadow).setup(conn)
        await conn.execute(
            text(
                f'CREATE TABLE "{schema}".replay_checkpoint ('
                "source text NOT NULL, position text NOT NULL, events bigint NOT NULL, "
                "updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        await conn.execute(
            text(
                f'INSERT INTO "{schema}".replay_checkpoint (source, position, events) '
                "VALUES (:source, '', 0)"
            ),
            {"source": source_kind},
        )
        await make_lean(conn, shadow)
    return Checkpoint(source_kind, "", 0)


async def save_checkpoint(conn: AsyncConnection, schema: str, position: str, events: int) -> None:
    """Record the source position after a batch, in the batch's transaction."""
    await conn.execute(
        text(
            f'UPDATE "{schema}".replay_checkpoint '
            "SET position = :position, events = :events, updated_at = now()"
        ),
        {"position": position, "events": events},
    )


async def drop_leftovers(conn: AsyncConnection, name: str) -> None:
    """Drop what earlier replays of `name` left: a shadow, old tables swapped out."""
    for schema in (shadow_schema(name), old_schema(name)):
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


async def _read_checkpoint(conn: AsyncConnection, schema: str) -> Checkpoint | None:
    exists = await conn.scalar(
        text("SELECT to_regclass(:table) IS NOT NULL"), {"table": f'"{schema}".replay_checkpoint'}
    )
    if not exists:
        return None
    row = (
        await conn.execute(
            text(f'SELECT source, position, events FROM "{schema}".replay_checkpoint')
        )
    ).first()
    return None if row is None else Checkpoint(row.source, row.position, int(row.events))
