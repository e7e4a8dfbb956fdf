"""Rebuilding a projection from an event history, atomically."""

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.projection import Projection
from consumers.sources import EventSource


async def replay(
    projection: Projection, engine: AsyncEngine, source: EventSource, *, batch_size: int = 1000
) -> BatchOutcome:
    """Empty the projection and apply the whole history, in one transaction.

    Readers see the old view until the rebuilt one commits; a live consumer of the same
    projection waits on the truncated tables meanwhile and afterwards finds every replayed
    event already tracked, so it only applies what is newer.
    """
    applier = ProjectionApplier(projection)
    total = BatchOutcome()
    async with engine.begin() as conn:
        await applier.setup(conn)
        await applier.reset(conn)
        async for batch in source.batches(batch_size):
            total.add(await applier.apply_batch(conn, batch))
    return total
