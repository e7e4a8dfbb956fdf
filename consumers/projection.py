"""The Projection base class: a read model built from events, in its own schema."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection

from events import Envelope, Event


class Projection(ABC):
    """A view kept up to date from events.

    `name` is also its consumer group and the PostgreSQL schema of its tables; `metadata`
    holds those tables (created at start, truncated by replay). `apply` runs inside the
    toolkit's transaction, together with the tracking record, so it is never applied twice
    for the same event; handlers should still be written to be idempotent.
    """

    name: ClassVar[str]
    handles: ClassVar[frozenset[type[Event]]]
    metadata: ClassVar[MetaData]
    # A projection that keeps every event as it came (an audit log) also gets event types
    # newer than its contract, through `apply_unknown`; the others skip them with a warning.
    keeps_unknown_types: ClassVar[bool] = False

    @abstractmethod
    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Change the view for one event of a handled type."""

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        """Change the view for several events of handled types, in the order given.

        The toolkit hands over every event of a batch that is due (duplicates already
        dropped) in one call. This default applies them one at a time; override it to write
        them in fewer statements, keeping each user's events in order.
        """
        for event, envelope in batch:
            await self.apply(conn, event, envelope)

    async def apply_unknown(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Record an event of a type this contract does not know (only if keeps_unknown_types)."""
        raise NotImplementedError(f"{self.name} does not keep unknown event types")

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create the schema and tables if they do not exist.

        Processes of one projection that start together take turns: two concurrent
        `CREATE SCHEMA IF NOT EXISTS` (or CREATE TABLE, CREATE OR REPLACE FUNCTION) can both
        miss the other's uncommitted object and fail with a duplicate key. The lock lasts
        until the caller's transaction ends, so an override that calls this first is
        covered for the rest of its own statements too.
        """
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"userbus.create_tables.{self.name}"},
        )
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.name}"'))
        await conn.run_sync(self.metadata.create_all)

    async def reset(self, conn: AsyncConnection) -> None:
        """Empty the view's tables (replay rebuilds them)."""
        tables = ", ".join(f'"{t.schema}"."{t.name}"' for t in self.metadata.sorted_tables)
        if tables:
            await conn.execute(text(f"TRUNCATE {tables}"))
