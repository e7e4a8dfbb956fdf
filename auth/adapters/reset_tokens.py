"""Single-use password reset tokens."""

from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.adapters.orm import password_resets
from auth.adapters.secrets import digest, new_secret


class ResetTokenRepository(Protocol):
    """Where password reset tokens are kept."""

    async def create(self, user_id: UUID, *, now: datetime, ttl: timedelta) -> str:
        """A new token for the user; earlier unused ones stop working."""
        ...

    async def find(self, token: str, *, now: datetime) -> UUID | None:
        """The user of an unused, unexpired token, locked until the transaction ends."""
        ...

    async def spend_all(self, user_id: UUID, *, now: datetime) -> None:
        """Mark every unused token of the user used (a reset, or a password change)."""
        ...


class SqlAlchemyResetTokenRepository:
    """ResetTokenRepository on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def create(self, user_id: UUID, *, now: datetime, ttl: timedelta) -> str:
        """A new token; only the latest link a user asked for works."""
        await self.spend_all(user_id, now=now)
        token, token_hash = new_secret()
        await self._conn.execute(
            insert(password_resets).values(
                token_hash=token_hash, user_id=user_id, created_at=now, expires_at=now + ttl
            )
        )
        return token

    async def find(self, token: str, *, now: datetime) -> UUID | None:
        """The user of an unused, unexpired token, locked so that it is spent only once."""
        query = (
            select(password_resets.c.user_id)
            .where(
                password_resets.c.token_hash == digest(token),
                password_resets.c.used_at.is_(None),
                password_resets.c.expires_at > now,
            )
            .with_for_update()
        )
        user_id: UUID | None = (await self._conn.execute(query)).scalar_one_or_none()
        return user_id

    async def spend_all(self, user_id: UUID, *, now: datetime) -> None:
        """Mark every unused token of the user used."""
        await self._conn.execute(
            update(password_resets)
            .where(password_resets.c.user_id == user_id, password_resets.c.used_at.is_(None))
            .values(used_at=now)
        )
