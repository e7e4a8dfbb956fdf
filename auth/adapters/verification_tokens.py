"""Single-use email verification tokens, each bound to the address it was mailed to."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.adapters.orm import email_verifications
from auth.adapters.secrets import digest, new_secret


@dataclass(frozen=True)
class VerificationGrant:
    """What an unused, unexpired token proves: that `user_id` receives mail at `email`."""

    user_id: UUID
    email: str


class VerificationTokenRepository(Protocol):
    """Where email verification tokens are kept."""

    async def create(self, user_id: UUID, email: str, *, now: datetime, ttl: timedelta) -> str:
        """A new token for the user's `email`; earlier unused ones stop working."""
        ...

    async def find(self, token: str, *, now: datetime) -> VerificationGrant | None:
        """The grant of an unused, unexpired token, locked until the transaction ends."""
        ...

    async def spend_all(self, user_id: UUID, *, now: datetime) -> None:
        """Mark every unused token of the user used."""
        ...


class SqlAlchemyVerificationTokenRepository:
    """VerificationTokenRepository on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def create(self, user_id: UUID, email: str, *, now: datetime, ttl: timedelta) -> str:
        """A new token; only the latest mail a user was sent works."""
        await self.spend_all(user_id, now=now)
        token, token_hash = new_secret()
        await self._conn.execute(
            insert(email_verifications).values(
                token_hash=token_hash, user_id=user_id, email=email, created_at=now,
                expires_at=now + ttl,
            )
        )  # fmt: skip
        return token

    async def find(self, token: str, *, now: datetime) -> VerificationGrant | None:
        """The grant of an unused, unexpired token, locked so that it is spent only once."""
        table = email_verifications
        query = (
            select(table.c.user_id, table.c.email)
            .where(
                table.c.token_hash == digest(token),
                table.c.used_at.is_(None),
                table.c.expires_at > now,
            )
            .with_for_update()
        )
        row = (await self._conn.execute(query)).first()
        return None if row is None else VerificationGrant(user_id=row.user_id, email=row.email)

    async def spend_all(self, user_id: UUID, *, now: datetime) -> None:
        """Mark every unused token of the user used."""
        table = email_verifications
        await self._conn.execute(
            update(table)
            .where(table.c.user_id == user_id, table.c.used_at.is_(None))
            .values(used_at=now)
        )
