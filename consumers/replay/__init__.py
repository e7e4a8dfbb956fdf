"""Rebuilding a projection from its event history without downtime: shadow, catch up, swap.

`replay()` builds the projection's rebuilt tables in a shadow schema (`<name>__replay`)
while the live ones keep serving reads and the live consumer keeps applying: one
transaction per page of the source, with the source position as a checkpoint, so an
interrupted replay resumes (`resume=True`); the shadow is unlogged and lacks its secondary
indexes until the first pass ends (consumers/replay/durability.py). It reads the source
again until a pass finds little new, then swaps the shadow in (consumers/replay/swap.py):
readers wait at most for the table move, never for the build. Tables the projection keeps
(`kept_tables`) are never rebuilt. When the source is the event log in the projection's
own database and the projection has SqlRows, the build runs in the database
(consumers/replay/in_database.py, `path` "in-database"); otherwise each page is read by
Python (`path` "client").
"""

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.projection import Projection
from consumers.replay.build import BuildState, build_pass
from consumers.replay.deferred import deferred_tracking, settle_pass
from consumers.replay.durability import make_durable
from consumers.replay.in_database import in_database_log, sql_build_pass
from consumers.replay.progress import LogProgress, ReplayProgress
from consumers.replay.shadow import (
    ReplayError,
    ensure_live,
    lock_replay,
    prepare_shadow,
    shadow_schema,
    unlock_replay,
)
from consumers.replay.sources import ReplaySource, as_replay_source
from consumers.replay.swap import SwapTimings, swap
from infra.event_log import PostgresEventLog
from infra.reading import EventSource

__all__ = ["ReplayError", "ReplayOutcome", "replay"]

DEFAULT_BATCH_SIZE = 10_000
# Passes over what came in since the previous one, before the swap takes the rest.
MAX_CATCH_UP_PASSES = 5


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What the replay did with the events it read, and how its swap went."""

    events: BatchOutcome
    swap: SwapTimings
    # The source position the build went on from ("": it started at the beginning).
    resumed_at: str
    # How the build ran: "in-database" (SQL from the log) or "client" (pages read here).
    path: str = "client"
    # Pages of the in-database build that went through the models instead.
    handed_over: int = 0

    @property
    def applied(self) -> int:
        """Events that changed the rebuilt view."""
        return self.events.applied


async def replay(
    projection: Projection,
    engine: AsyncEngine,
    source: ReplaySource | EventSource,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resume: bool = False,
    progress: ReplayProgress | None = None,
) -> ReplayOutcome:
    """Rebuild `projection` from `source` into a shadow and swap it in; see the module."""
    history = as_replay_source(source)
    progress = progress or LogProgress(projection.name)
    shadow = projection.in_schema(shadow_schema(projection.name))
    async with engine.connect() as guard:
        await lock_replay(guard, projection.name)
        try:
            await ensure_live(engine, projection)
            checkpoint = await prepare_shadow(engine, shadow, history.kind, resume=resume)
            start = history.resume_from(checkpoint.position)
            events = checkpoint.events if start == checkpoint.position else 0
            state = BuildState(start, events)
            total, done = await history.total(), history.progress_at(start, events)
            progress.start(total, done)
            applier = ProjectionApplier(shadow)
            log = await in_database_log(engine, shadow, history)
            if log is None and await deferred_tracking(engine, shadow.schema):
                raise ReplayError(
                    f"the interrupted replay of {projection.name} was built in the database "
                    "from the event log, which this one cannot read; start over without "
                    "--resume, or resume where the log is readable"
                )
            for passes in range(MAX_CATCH_UP_PASSES):
                if log is not None:
                    read = await sql_build_pass(
                        engine, applier, log, state, batch_size=batch_size, progress=progress
                    )
                else:
                    read = await build_pass(
                        engine, applier, history, state, batch_size=batch_size, progress=progress
                    )
                progress.advance(0, await history.total())
                if passes == 0:
                    # The bulk is built; what follows is small (consumers/replay/durability.py).
                    await _after_bulk(engine, shadow, log, state)
                if read < batch_size:
                    break
            timings = await swap(engine, projection, shadow, history, state, batch_size=batch_size)
        except BaseException:
            progress.finish("stopped; --resume goes on from the last checkpoint")
            raise
        finally:
            await history.close()
            await unlock_replay(guard, projection.name)
    outcome = state.outcome
    progress.finish(
        f"swapped in: {outcome.applied} applied, {outcome.skipped} not handled, "
        f"{outcome.duplicates} duplicates, {len(outcome.rejected)} rejected"
    )
    path = "client" if log is None else "in-database"
    return ReplayOutcome(outcome, timings, start, path, state.handed_over)


async def _after_bulk(
    engine: AsyncEngine, shadow: Projection, log: PostgresEventLog | None, state: BuildState
) -> None:
    """Make the shadow durable; the rebuilt tables while the deferred tracking records are
    written (consumers/replay/deferred.py) and made durable, on two connections."""
    if log is not None:
        position = int(state.position or 0)

        async def settled() -> None:
            await settle_pass(engine, shadow.schema, log.schema, position)
            await make_durable(engine, shadow, only="tracking")

        await asyncio.gather(make_durable(engine, shadow, only="rebuilt"), settled())
    await make_durable(engine, shadow)
