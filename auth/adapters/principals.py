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
       u.display_name, u.created_at, u.updated_at, u.version,
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
    """The questions asked during one turn of the event loop, and their shared answers."""

    now: datetime
    # The row of each question (None: no such user). Callers build their own User from it,
    # so no two requests ever share a mutable object.
    answers: dict[_Key, "asyncio.Future[asyncpg.Record | None]"]


def _retrieve(answer: "asyncio.Future[asyncpg.Record | None]") -> None:
    # Marks an error as seen even when every caller of the batch has given up meanwhile.
    if not answer.cancelled():
        answer.exception()


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
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(now=now, answers={})
            asyncio.get_running_loop().call_soon(self._send, batch)
        batch.now = max(batch.now, now)
        key = (user_id, session_id)
        answer = batch.answers.get(key)
        if answer is None:
            answer = batch.answers[key] = asyncio.get_running_loop().create_future()
            answer.add_done_callback(_retrieve)
            if len(batch.answers) >= MAX_BATCH:
                self._send(batch)
        # One caller giving up (its client left) must not cancel the others' answer.
        row = await asyncio.shield(answer)
        return None if row is None else _standing(row)

    async def close(self) -> None:
        """Wait for the statements in flight, then close the pool's connections."""
        if self._running:
            await asyncio.wait(set(self._running))
        async with self._opening:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    def _send(self, batch: _Batch) -> None:
        if self._batch is not batch:
            return  # already sent, when it filled up
        self._batch = None
        self.statements += 1
        task = asyncio.get_running_loop().create_task(self._ask(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _ask(self, batch: _Batch) -> None:
        keys = list(batch.answers)
        try:
            rows = await self._fetch(keys, batch.now)
        except asyncio.CancelledError:
            for answer in batch.answers.values():
                answer.cancel()
            raise
        except Exception as exc:
            for answer in batch.answers.values():
                if not answer.done():
                    answer.set_exception(exc)
            return
        found = {row["position"]: row for row in rows}
        for position, key in enumerate(keys, start=1):
            answer = batch.answers[key]
            if not answer.done():
                answer.set_result(found.get(position))

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
    )
    return Standing(user=user, session_live=row["session_live"])
