"""The event log (an outbox table in PostgreSQL) read by position, without skipping late commits.

A position is the outbox id. Ids are drawn when a row is inserted, but transactions commit in
another order: a reader that takes "everything after the largest id I saw" skips an event
whose transaction drew a smaller id and committed later. `head()` is therefore the commit-safe
horizon: the largest id drawn so far, returned only once every transaction that could still
commit an id at or below it has ended. It finds those transactions by their lock: an INSERT
takes ROW EXCLUSIVE on the outbox when its statement starts, before it draws an id, and holds
it until the transaction ends; so once every holder seen after reading the sequence is gone,
each id up to the sequence value is committed (and visible) or never will be. Readers wait
for writers' transactions (milliseconds), never block them.
"""

import asyncio
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

import asyncpg

from events import Envelope, envelope_from_json
from infra.settings import asyncpg_dsn

# How long head() waits for open writers before it answers with the last horizon it proved.
HORIZON_WAIT_SECONDS = 2.0
_POLL_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class LogPage:
    """Events after a position, in position order, and where the next page starts."""

    # (position, the envelope's JSON text): served or parsed as the caller prefers.
    rows: list[tuple[int, str]]
    next: int
    # The page ended at the commit-safe head: nothing more is committed now.
    caught_up: bool

    def envelopes(self) -> list[Envelope]:
        """The page's envelopes, validated."""
        return [envelope_from_json(payload) for _, payload in self.rows]


class EventLog(Protocol):
    """The auth service's event log, read by position (PostgreSQL here, HTTP in infra/feed.py)."""

    async def page(self, after: int, limit: int) -> LogPage:
        """Events with position > `after`, at most `limit`, never skipping a late commit."""
        ...

    async def events_of(self, user_id: UUID, after_sequence: int = 0) -> list[Envelope]:
        """One user's committed events with sequence > `after_sequence`, in sequence order."""
        ...

    async def head(self) -> int:
        """A position every event committed now is at or below."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class PostgresEventLog:
    """The EventLog of `<schema>.outbox`, through a small asyncpg pool opened on first use."""

    def __init__(self, database_url: str, *, schema: str = "auth", pool_size: int = 2) -> None:
        if not schema.isidentifier() or schema.lower() != schema:
            raise ValueError(f"an outbox schema is a lower-case identifier, not {schema!r}")
        self._dsn = asyncpg_dsn(database_url)
        self._schema = schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        # The largest horizon proved so far: safety only grows, so it can be reused.
        self._safe_head = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def page(self, after: int, limit: int) -> LogPage:
        """Events after `after` up to the safe head; `next` is the head once nothing is left."""
        head = self._safe_head if self._safe_head >= after + limit else await self.head()
        pool = await self._open()
        rows = await pool.fetch(
            f"SELECT id, payload::text FROM {self._schema}.outbox "
            "WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            after,
            head,
            limit,
        )
        found = [(row[0], row[1]) for row in rows]
        if len(found) == limit:
            return LogPage(found, found[-1][0], caught_up=found[-1][0] >= head)
        # Everything committed up to the head was visible to this read: skip to it.
        return LogPage(found, max(head, after), caught_up=True)

    async def events_of(self, user_id: UUID, after_sequence: int = 0) -> list[Envelope]:
        """One user's events: each commits after the one before (the user's row is locked)."""
        pool = await self._open()
        rows = await pool.fetch(
            f"SELECT payload::text FROM {self._schema}.outbox "
            "WHERE subject = $1 AND sequence > $2 ORDER BY sequence",
            user_id,
            after_sequence,
        )
        return [envelope_from_json(row[0]) for row in rows]

    async def head(self) -> int:
        """The commit-safe horizon (see the module's docstring)."""
        pool = await self._open()
        async with pool.acquire() as conn:
            drawn = await conn.fetchval(
                "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass)"
                ", 0)",
                f"{self._schema}.outbox",
            )
            holders = await conn.fetch(_HOLDERS, f"{self._schema}.outbox")
            waiting = [row[0] for row in holders]
            deadline = time.monotonic() + HORIZON_WAIT_SECONDS
            while waiting:
                if time.monotonic() > deadline:
                    return self._safe_head  # a long transaction: answer with what is proved
                await asyncio.sleep(_POLL_SECONDS)
                waiting = await conn.fetchval(_STILL_HOLDING, f"{self._schema}.outbox", waiting)
        self._safe_head = max(self._safe_head, int(drawn))
        return self._safe_head

    @property
    def schema(self) -> str:
        """The schema of the outbox this log reads."""
        return self._schema

    async def shares_database(self, conn: asyncpg.Connection) -> bool:
        """Whether `conn` is connected to the very database this log reads (not a copy).

        Proved, not guessed from the URLs: one of the log's connections takes an advisory
        lock with a random key, and `conn` looks for that lock in its own database.
        """
        key = secrets.randbits(63)
        pool = await self._open()
        async with pool.acquire() as mine:
            pid = await mine.fetchval("SELECT pg_backend_pid() FROM pg_advisory_lock($1)", key)
            try:
                found = await conn.fetchval(_ADVISORY_HELD, pid, key >> 32, key & 0xFFFFFFFF)
            finally:
                await mine.execute("SELECT pg_advisory_unlock($1)", key)
        return bool(found)

    async def close(self) -> None:
        """Close the pool (a later call opens a new one)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._pool_size
                )
        return self._pool


# Transactions (other than ours) holding the lock an INSERT into the outbox takes. pg_locks
# covers every database of the cluster, where copies of one database share table oids.
_HOLDERS = """
    SELECT DISTINCT virtualtransaction FROM pg_locks
    WHERE locktype = 'relation' AND relation = $1::regclass AND mode = 'RowExclusiveLock'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND granted AND pid <> pg_backend_pid()
"""
_STILL_HOLDING = """
    SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks
    WHERE locktype = 'relation' AND relation = $1::regclass AND mode = 'RowExclusiveLock'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND virtualtransaction = ANY($2::text[])
"""
# A session advisory lock on a bigint key shows as (classid, objid) = its high and low halves.
_ADVISORY_HELD = """
    SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = $1
      AND classid = $2::bigint::oid AND objid = $3::bigint::oid AND objsubid = 1 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""
