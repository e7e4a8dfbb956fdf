"""The bearer check's one round trip: a token's user, and whether the token's session is live.

Every bearer-authenticated request asks this, so it is one prepared statement on a small
asyncpg pool of its own: no transaction, no pool ping, no reset query on release. Requests
that ask within the same turn of the event loop share that statement: their questions go
out together, as one round trip for all of them (bench/README.md, "Where /users/me spends
its time", has the measurements behind each choice).
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

import asyncpg

from auth.adapters.orm import SCHEMA
from auth.domain.model import User


@dataclass(frozen=True)
class Standing:
    """A user as stored now, and whether the session asked about is live and theirs."""

    user: User
    session_live: bool


class PrincipalStore(Protocol):
    """Reads what a verified token's checks need, in one look at committed state."""

    async def standing(
        self, user_id: UUID, session_id: UUID | None, *, now: datetime
    ) -> Standing | None:
        """The user with `user_id` (None if there is none), and whether `session_id` is live.

        Live means: the session exists, belongs to that user, is not revoked, and expires
        after `now`. Without a `session_id`, `session_live` is False.
        """
        ...


# Each asked (user, session) pair with its position; the user's row and the session's
# liveness by primary key. A pair whose user does not exist has no row.
STANDING_SQL = f"""
SELECT q.position, u.id, u.username, u.email, u.password_hash, u.role, u.status,
       u.display_name, u.created_at, u.updated_at, u.version, u.email_verified,
       u.email_verified_at,
       EXISTS (
           SELECT 1 FROM {SCHEMA}.sessions s
           WHERE s.id = q.session_id AND s.user_id = u.id
             AND s.revoked_at IS NULL AND s.expires_at > $3
       ) AS session_live
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS q(user_id, session_id, position)
JOIN {SCHEMA}.users u ON u.id = q.user_id
"""
# Questions in one statement at most; more wait for the next one.
MAX_BATCH = 500

_Key = tuple[UUID, UUID | None]
# What a connection the server closed raises, in flight or when next used.
_LOST_CONNECTION = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query: the pool only ever runs STANDING_SQL.

    That statement sets no session state and takes no lock, and asyncpg itself rolls back
    a transaction left open, so the reset query would only add a round trip per request.
    """


@dataclass
class _Batch:
    """The questions asked during one turn of the event loop, and who waits for each."""

    now: datetime
    # Each caller waits on a future of its own, so one giving up (its client left) cancels
    # nobody else's; all get the same row and build their own User from it.
    waiting: dict[_Key, list["asyncio.Future[asyncpg.Record | None]"]]


class AsyncpgPrincipalStore:
    """PrincipalStore on an asyncpg pool (opened on first use, closed by `close`).

    The same question asked twice in one batch is asked once. Each batch is judged at one
    `now`: the latest of its questions' (a session expiring in between counts as expired).
    """

    def __init__(self, dsn: str, *, max_size: int) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._batch: _Batch | None = None
        self._running: set[asyncio.Task[None]] = set()
        # Statements sent so far: how many questions a statement carries is what batching buys.
        self.statements = 0

    async def standing(
        self, user_id: UUID, session_id: UUID | None, *, now: datetime
    ) -> Standing | None:
        """The user and the session's liveness, asked with this turn's other questions."""
        if self._pool is None:
            await self._open()
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None:
            # The statement leaves when its task first runs, on the loop's next turn: by then
            # every request of this turn has added its question.
            batch = self._batch = _Batch(now=now, waiting={})
            task = loop.create_task(self._ask(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        batch.now = max(batch.now, now)
        answer: asyncio.Future[asyncpg.Record | None] = loop.create_future()
        batch.waiting.setdefault((user_id, session_id), []).append(answer)
        if len(batch.waiting) >= MAX_BATCH:
            self._batch = None  # full: later questions start the next batch
        row = await answer
        return None if row is None else _standing(row)

    async def close(self) -> None:
        """Wait for the statements in flight, then close the pool's connections."""
        if self._running:
            await asyncio.wait(set(self._running))
        async with self._opening:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    async def _ask(self, batch: _Batch) -> None:
        if self._batch is batch:
            self._batch = None  # questions from now on go into the next batch
        self.statements += 1
        keys = list(batch.waiting)
        try:
            rows = await self._fetch(keys, batch.now)
        except asyncio.CancelledError:
            for answers in batch.waiting.values():
                for answer in answers:
                    answer.cancel()
            raise
        except Exception as exc:
            for answers in batch.waiting.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(exc)
            return
        found = {row["position"]: row for row in rows}
        for position, key in enumerate(keys, start=1):
            row = found.get(position)
            for answer in batch.waiting[key]:
                if not answer.done():
                    answer.set_result(row)

    async def _fetch(self, keys: list[_Key], now: datetime) -> list[asyncpg.Record]:
        assert self._pool is not None, "the pool opens before a question is queued"
        arguments = (STANDING_SQL, [k[0] for k in keys], [k[1] for k in keys], now)
        try:
            rows: list[asyncpg.Record] = await self._pool.fetch(*arguments)
        except _LOST_CONNECTION:
            # The server ended the connection (a restart, a failover, an idle timeout): the
            # statement only reads, so it is asked again, on a connection the pool opens anew.
            rows = await self._pool.fetch(*arguments)
        return rows

    async def _open(self) -> None:
        # Many requests may arrive before the pool exists: exactly one of them opens it.
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._max_size, reset=_keep_session_state
                )


def _standing(row: asyncpg.Record) -> Standing:
    user = User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        password_hash=row["password_hash"],
        role=row["role"],
        status=row["status"],
        display_name=row["display_name"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        email_verified=row["email_verified"],
        email_verified_at=row["email_verified_at"],
    )
    return Standing(user=user, session_live=row["session_live"])
