"""The bearer check's one round trip: a token's user, and whether the token's session is live.

Every bearer-authenticated request asks this, so it runs as one prepared statement on a
small asyncpg pool of its own: no transaction, no pool ping, no reset query on release
(bench/README.md, "Where /users/me spends its time", has the measurements behind that).
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


# The user's row and the session's liveness in one statement; both by primary key.
STANDING_SQL = f"""
SELECT u.id, u.username, u.email, u.password_hash, u.role, u.status, u.display_name,
       u.created_at, u.updated_at, u.version,
       EXISTS (
           SELECT 1 FROM {SCHEMA}.sessions s
           WHERE s.id = $2 AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > $3
       ) AS session_live
FROM {SCHEMA}.users u
WHERE u.id = $1
"""


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query: the pool only ever runs STANDING_SQL.

    That statement sets no session state, takes no lock and opens no transaction, so there
    is nothing to reset, and the reset would cost a second round trip per request.
    """


class AsyncpgPrincipalStore:
    """PrincipalStore on an asyncpg pool, opened on first use and closed by `close`."""

    def __init__(self, dsn: str, *, max_size: int) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def standing(
        self, user_id: UUID, session_id: UUID | None, *, now: datetime
    ) -> Standing | None:
        """The user and the session's liveness, read by one prepared statement."""
        pool = self._pool or await self._open()
        row = await pool.fetchrow(STANDING_SQL, user_id, session_id, now)
        if row is None:
            return None
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

    async def close(self) -> None:
        """Close the pool's connections (nothing to do if it never opened)."""
        async with self._opening:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    async def _open(self) -> asyncpg.Pool:
        # Many requests may arrive before the pool exists: exactly one of them opens it.
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._max_size, reset=_keep_session_state
                )
            return self._pool
