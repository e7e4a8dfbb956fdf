"""Sessions: one per login, each a family of rotating refresh tokens."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID, uuid4

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.adapters.orm import refresh_tokens, sessions
from auth.adapters.secrets import digest, new_secret
from auth.domain.sessions import Client, SessionInfo

_NOWHERE = Client()


@dataclass(frozen=True)
class RefreshGrant:
    """What a presented refresh token belongs to, and the state of both."""

    token_hash: bytes
    session_id: UUID
    user_id: UUID
    token_used: bool
    token_expires_at: datetime
    session_revoked: bool
    session_expires_at: datetime

    def usable(self, now: datetime) -> bool:
        """Unrevoked, unexpired session and token (rotation is checked separately)."""
        return (
            not self.session_revoked
            and self.token_expires_at > now
            and self.session_expires_at > now
        )


class SessionRepository(Protocol):
    """Where sessions and their refresh tokens are kept."""

    async def create(
        self, user_id: UUID, *, now: datetime, ttl: timedelta, client: Client = _NOWHERE
    ) -> tuple[UUID, str]:
        """A new session and its first refresh token."""
        ...

    async def find_refresh(self, token: str) -> RefreshGrant | None:
        """The grant behind a refresh token, locked until the transaction ends."""
        ...

    async def rotate(
        self, grant: RefreshGrant, *, now: datetime, ttl: timedelta, client: Client = _NOWHERE
    ) -> str:
        """Spend the token and return the session's next one."""
        ...

    async def revoke(self, session_id: UUID, *, now: datetime, reason: str) -> None:
        """End one session: its refresh tokens and access tokens stop working."""
        ...

    async def revoke_all(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int:
        """End every session of the user but `keep`; how many ended."""
        ...

    async def is_active(self, session_id: UUID, user_id: UUID, *, now: datetime) -> bool:
        """Whether the session exists, belongs to the user, and is neither revoked nor expired."""
        ...

    async def list_live(self, user_id: UUID, *, now: datetime) -> list[SessionInfo]:
        """The user's unrevoked, unexpired sessions, the most recently used first."""
        ...

    async def revoke_owned(
        self, session_id: UUID, user_id: UUID, *, now: datetime, reason: str
    ) -> bool:
        """End the session if it is live and the user's; whether it was."""
        ...


class SqlAlchemySessionRepository:
    """SessionRepository on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def create(
        self, user_id: UUID, *, now: datetime, ttl: timedelta, client: Client = _NOWHERE
    ) -> tuple[UUID, str]:
        """A new session and its first refresh token."""
        session_id = uuid4()
        await self._conn.execute(
            insert(sessions).values(
                id=session_id,
                user_id=user_id,
                created_at=now,
                last_used_at=now,
                expires_at=now + ttl,
                client_address=client.address,
                user_agent=client.user_agent,
            )
        )
        return session_id, await self._new_token(session_id, now=now, ttl=ttl)

    async def find_refresh(self, token: str) -> RefreshGrant | None:
        """The grant behind a refresh token, locked until the transaction ends."""
        query = (
            select(
                refresh_tokens.c.token_hash,
                refresh_tokens.c.session_id,
                sessions.c.user_id,
                refresh_tokens.c.used_at,
                refresh_tokens.c.expires_at,
                sessions.c.revoked_at,
                sessions.c.expires_at.label("session_expires_at"),
            )
            .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
            .where(refresh_tokens.c.token_hash == digest(token))
            # Two concurrent refreshes with one token: the second waits, then sees it used.
            .with_for_update(of=refresh_tokens)
        )
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        return RefreshGrant(
            token_hash=row.token_hash,
            session_id=row.session_id,
            user_id=row.user_id,
            token_used=row.used_at is not None,
            token_expires_at=row.expires_at,
            session_revoked=row.revoked_at is not None,
            session_expires_at=row.session_expires_at,
        )

    async def rotate(
        self, grant: RefreshGrant, *, now: datetime, ttl: timedelta, client: Client = _NOWHERE
    ) -> str:
        """Spend the token and return the session's next one (the session slides on)."""
        await self._conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == grant.token_hash)
            .values(used_at=now)
        )
        await self._conn.execute(
            update(sessions)
            .where(sessions.c.id == grant.session_id)
            .values(
                last_used_at=now,
                expires_at=now + ttl,
                client_address=client.address,
                user_agent=client.user_agent,
            )
        )
        return await self._new_token(grant.session_id, now=now, ttl=ttl)

    async def revoke(self, session_id: UUID, *, now: datetime, reason: str) -> None:
        """End one session."""
        await self._conn.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )

    async def revoke_all(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int:
        """End every session of the user but `keep`."""
        condition = (sessions.c.user_id == user_id) & sessions.c.revoked_at.is_(None)
        if keep is not None:
            condition &= sessions.c.id != keep
        result = await self._conn.execute(
            update(sessions).where(condition).values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount

    async def is_active(self, session_id: UUID, user_id: UUID, *, now: datetime) -> bool:
        """Whether the session is live and the user's."""
        query = select(sessions.c.id).where(
            sessions.c.id == session_id,
            sessions.c.user_id == user_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now,
        )
        return (await self._conn.execute(query)).first() is not None

    async def list_live(self, user_id: UUID, *, now: datetime) -> list[SessionInfo]:
        """The user's live sessions, the most recently used first."""
        query = (
            select(
                sessions.c.id,
                sessions.c.created_at,
                sessions.c.last_used_at,
                sessions.c.expires_at,
                sessions.c.client_address,
                sessions.c.user_agent,
            )
            .where(
                sessions.c.user_id == user_id,
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now,
            )
            .order_by(sessions.c.last_used_at.desc(), sessions.c.id)
        )
        rows = (await self._conn.execute(query)).all()
        return [SessionInfo(**row._mapping) for row in rows]

    async def revoke_owned(
        self, session_id: UUID, user_id: UUID, *, now: datetime, reason: str
    ) -> bool:
        """End the session if it is live and the user's."""
        result = await self._conn.execute(
            update(sessions)
            .where(
                sessions.c.id == session_id,
                sessions.c.user_id == user_id,
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now,
            )
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount == 1

    async def _new_token(self, session_id: UUID, *, now: datetime, ttl: timedelta) -> str:
        token, token_hash = new_secret()
        await self._conn.execute(
            insert(refresh_tokens).values(
                token_hash=token_hash, session_id=session_id, created_at=now, expires_at=now + ttl
            )
        )
        return token
