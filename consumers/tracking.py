"""Tracking records: the last sequence a projection applied for each user.

They are written in the projection's own transaction, so the view and its tracking move
together: a redelivered event finds its sequence already recorded and changes nothing.
"""

from collections.abc import Mapping
from uuid import UUID

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Uuid, func, text
from sqlalchemy.ext.asyncio import AsyncConnection


def tracking_table(schema: str) -> Table:
    """The tracking table of the projection whose schema is `schema`."""
    return Table(
        "tracking",
        MetaData(schema=schema),
        Column("subject", Uuid, primary_key=True),
        Column("sequence", Integer, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def lock_positions(
    conn: AsyncConnection, table: Table, final: Mapping[UUID, int]
) -> tuple[dict[UUID, int], set[UUID]]:
    """The last applied sequence of each subject, row-locked until the transaction ends.

    `final` maps each subject of the batch to its position once the batch is applied. A
    subject without a record gets one at that position at once (its position before is 0);
    the returned set names them, so that `save_positions` skips them. The row lock
    serialises two consumers that hold events of the same user, so both cannot read the
    same position and apply the same event.
    """
    ordered = sorted(final)  # one lock order everywhere: no deadlocks
    # One round trip: a new subject is inserted (xmax = 0 tells a row this statement
    # inserted); an existing one is locked by the no-op update, and RETURNING gives its
    # current position.
    rows = await conn.execute(
        text(
            f'INSERT INTO "{table.schema}".tracking AS t (subject, sequence) '
            "SELECT * FROM unnest(CAST(:subjects AS uuid[]), CAST(:sequences AS int[])) "
            "ON CONFLICT (subject) DO UPDATE SET subject = t.subject "
            "RETURNING t.subject, t.sequence, (t.xmax = 0) AS created"
        ),
        {"subjects": ordered, "sequences": [final[s] for s in ordered]},
    )
    positions: dict[UUID, int] = {}
    created: set[UUID] = set()
    for subject, sequence, inserted in rows:
        if inserted:
            created.add(subject)
            positions[subject] = 0
        else:
            positions[subject] = sequence
    return positions, created


async def save_positions(
    conn: AsyncConnection, table: Table, positions: Mapping[UUID, int]
) -> None:
    """Record the new last applied sequence of each subject."""
    if not positions:
        return
    await conn.execute(
        text(
            f'UPDATE "{table.schema}".tracking AS t SET sequence = p.sequence, applied_at = now() '
            "FROM unnest(CAST(:subjects AS uuid[]), CAST(:sequences AS int[])) "
            "AS p(subject, sequence) WHERE t.subject = p.subject"
        ),
        {"subjects": list(positions), "sequences": list(positions.values())},
    )
