"""Building the shadow: a transaction per page with its checkpoint, the next page read ahead."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.replay.bulk import apply_page
from consumers.replay.prepare import PreparedPage, prepare_page
from consumers.replay.progress import ReplayProgress
from consumers.replay.shadow import save_checkpoint
from consumers.replay.sources import ReplaySource, SourcePage

T = TypeVar("T")
U = TypeVar("U")


@dataclass
class BuildState:
    """Where the build stands: the source position and events read, what happened to them."""

    position: str
    events: int
    outcome: BatchOutcome = field(default_factory=BatchOutcome)
    # Pages the in-database build handed to the models (consumers/replay/in_database.py).
    handed_over: int = 0


async def build_pass(
    engine: AsyncEngine,
    applier: ProjectionApplier,
    source: ReplaySource,
    state: BuildState,
    *,
    batch_size: int,
    progress: ReplayProgress,
) -> int:
    """Apply the source from `state.position` to its end as it is now; the events read.

    Each page commits with the checkpoint that names the position after it, so a crash
    loses at most the page in flight and a resumed replay goes on from the last commit.
    The commit does not wait for the WAL flush: a page lost to a crash takes its
    checkpoint with it, and the replay goes on from the one before.
    """
    projection = applier.projection
    read = 0

    async def prepare(page: SourcePage) -> PreparedPage:
        return await asyncio.to_thread(prepare_page, page, projection)

    # Three stages at once: reading page n + 2, preparing n + 1 (a thread), writing n.
    fetched = read_ahead(source.pages(state.position, batch_size), _same)
    async for prepared in read_ahead(fetched, prepare):
        page = prepared.page
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL synchronous_commit = off"))
            outcome = await apply_page(conn, applier, prepared)
            events = state.events + len(page.parsed if page.parsed is not None else page.raw)
            await save_checkpoint(conn, projection.schema, page.position, events)
        read += events - state.events
        state.position, state.events = page.position, events
        state.outcome.add(outcome)
        progress.advance(page.advanced, None)
    return read


async def _same(page: SourcePage) -> SourcePage:
    return page


async def read_ahead(
    items: AsyncIterator[T], transform: Callable[[T], Awaitable[U]]
) -> AsyncIterator[U]:
    """`transform` of each item, the next one already read and transformed meanwhile."""
    done = object()

    async def following() -> object:
        item = await anext(items, done)
        return done if item is done else await transform(cast(T, item))

    pending: asyncio.Task[object] = asyncio.create_task(following())
    try:
        while True:
            result = await pending
            if result is done:
                return
            pending = asyncio.create_task(following())
            yield cast(U, result)
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
