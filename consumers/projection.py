"""The Projection base class: a read model built from events, in its own schema."""

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Self

from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncConnection

from events import Envelope, Event

if TYPE_CHECKING:
    from consumers.replay.raw import BulkRows
    from consumers.replay.sql_rows import SqlRows


class Projection(ABC):
    """A view kept up to date from events.

    `name` is also its consumer group and the PostgreSQL schema of its live tables;
    `metadata` holds those tables. `apply` runs inside the toolkit's transaction, together
    with the tracking record, so it is never applied twice for the same event; handlers
    should still be written to be idempotent.

    `schema` is where this instance writes its rebuilt tables: the live schema (`name`) by
    default, a shadow schema for a replay (`in_schema`). Every statement goes through
    `table()`, or names `self.schema` in its SQL. The tables named in `kept_tables` are not
    rebuilt by a replay: they always live in the live schema, and the instance that
    rebuilds into a shadow reads and writes the live ones (an outbox of answers already
    acted on, mails already sent).
    """

    name: ClassVar[str]
    handles: ClassVar[frozenset[type[Event]]]
    metadata: ClassVar[MetaData]
    # A projection that keeps every event as it came (an audit log) also gets event types
    # newer than its contract, through `apply_unknown`; the others skip them with a warning.
    keeps_unknown_types: ClassVar[bool] = False
    # Tables of the live schema a replay keeps as they are (never moved, never dropped).
    kept_tables: ClassVar[frozenset[str]] = frozenset()

    _schema: str | None = None
    _tables: dict[str, Table] | None = None

    @property
    def schema(self) -> str:
        """The schema this instance writes its rebuilt tables and tracking records into."""
        return self._schema or self.name

    def in_schema(self, schema: str) -> Self:
        """A copy of this projection (same configuration) that writes into `schema`."""
        clone = copy.copy(self)
        clone._schema = schema
        clone._tables = None
        return clone

    @property
    def rebuilt_tables(self) -> list[Table]:
        """The tables of `metadata` a replay rebuilds, as they are in `schema`."""
        return [
            self.table(t) for t in self.metadata.sorted_tables if t.name not in self.kept_tables
        ]

    def table(self, table: Table) -> Table:
        """`table` (one of `metadata`'s) where this instance uses it: kept ones stay live."""
        if self._tables is None:
            target = MetaData()
            self._tables = {
                t.name: t
                if t.name in self.kept_tables or self.schema == self.name
                else t.to_metadata(target, schema=self.schema)
                for t in self.metadata.sorted_tables
            }
        return self._tables[table.name]

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

    def bulk_rows(self) -> "BulkRows | None":
        """The fast path of a replay into a shadow (consumers/replay/raw.py), if it has one."""
        return None

    def sql_rows(self) -> "SqlRows | None":
        """The in-database replay from a log in the same database (replay/in_database.py)."""
        return None

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create the schema and tables if they do not exist (kept ones in the live schema).

        Processes of one projection that start together take turns: two concurrent
        `CREATE SCHEMA IF NOT EXISTS` (or CREATE TABLE, CREATE OR REPLACE FUNCTION) can both
        miss the other's uncommitted object and fail with a duplicate key. The lock lasts
        until the caller's transaction ends, so an override that calls this first is
        covered for the rest of its own statements too.
        """
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"userbus.create_tables.{self.schema}"},
        )
        for schema in dict.fromkeys([self.name, self.schema]):
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        tables = [self.table(t) for t in self.metadata.sorted_tables]
        await conn.run_sync(lambda sync: MetaData().create_all(sync, tables=tables))

    async def carry_over(self, conn: AsyncConnection) -> None:
        """Inside a replay's swap: take over what the live view holds that events cannot rebuild.

        Called on the instance that rebuilt into the shadow schema, after it caught up
        with the live one, while the live tables are locked against writers (EXCLUSIVE).
        The live tracking table tells which users the rebuilt view is ahead on (events the
        live one never applied). The default has nothing to carry over.
        """
        return None
