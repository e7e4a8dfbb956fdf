"""Where TOTP enrolments and recovery codes are kept (the secret only encrypted)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.adapters.orm import mfa_recovery_codes, mfa_totp


@dataclass(frozen=True)
class StoredTotp:
    """A user's TOTP row as stored: the secret still encrypted."""

    secret_ciphertext: bytes
    confirmed: bool
    last_used_step: int | None


class MfaRepository(Protocol):
    """TOTP enrolments and recovery codes of the unit of work's transaction."""

    async def get(self, user_id: UUID) -> StoredTotp | None:
        """The user's TOTP row, pending or confirmed, if any."""
        ...

    async def enabled(self, user_id: UUID) -> bool:
        """Whether the user has a confirmed TOTP enrolment (read without locking)."""
        ...

    async def start(self, user_id: UUID, ciphertext: bytes, *, now: datetime) -> bool:
        """Store a pending enrolment (replacing a pending one); False if one is confirmed."""
        ...

    async def accept_step(self, user_id: UUID, step: int) -> bool:
        """Remember `step` as used, if it is later than the last one; whether it was."""
        ...

    async def confirm(self, user_id: UUID, *, now: datetime) -> bool:
        """Turn the pending enrolment on; whether one was pending."""
        ...

    async def replace_recovery_codes(
        self, user_id: UUID, digests: list[bytes], *, now: datetime
    ) -> None:
        """Forget the user's recovery codes and store these instead."""
        ...

    async def spend_recovery_code(
        self, user_id: UUID, digests: Sequence[bytes], *, now: datetime
    ) -> bool:
        """Mark the code (one of `digests`: under each key) used if it is the user's and
        unused; whether it was."""
        ...

    async def replace_secret(self, user_id: UUID, ciphertext: bytes) -> None:
        """Store the same secret encrypted anew (after a key rotation)."""
        ...

    async def unused_recovery_codes(self, user_id: UUID) -> int:
        """How many of the user's recovery codes are left."""
        ...

    async def remove(self, user_id: UUID) -> bool:
        """Forget the user's TOTP and recovery codes; whether TOTP was confirmed."""
        ...


class SqlAlchemyMfaRepository:
    """MfaRepository on the unit of work's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, user_id: UUID) -> StoredTotp | None:
        """The user's TOTP row, locked until the transaction ends (codes are checked once)."""
        query = (
            select(mfa_totp.c.secret_ciphertext, mfa_totp.c.confirmed_at, mfa_totp.c.last_used_step)
            .where(mfa_totp.c.user_id == user_id)
            .with_for_update()
        )
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        return StoredTotp(row.secret_ciphertext, row.confirmed_at is not None, row.last_used_step)

    async def enabled(self, user_id: UUID) -> bool:
        """Whether the user has a confirmed TOTP enrolment."""
        query = select(mfa_totp.c.user_id).where(
            mfa_totp.c.user_id == user_id, mfa_totp.c.confirmed_at.is_not(None)
        )
        return (await self._conn.execute(query)).first() is not None

    async def start(self, user_id: UUID, ciphertext: bytes, *, now: datetime) -> bool:
        """Store a pending enrolment (replacing a pending one); False if one is confirmed."""
        statement = pg_insert(mfa_totp).values(
            user_id=user_id, secret_ciphertext=ciphertext, created_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[mfa_totp.c.user_id],
            set_={"secret_ciphertext": ciphertext, "created_at": now, "last_used_step": None},
            where=mfa_totp.c.confirmed_at.is_(None),
        )
        result = await self._conn.execute(statement)
        return result.rowcount == 1

    async def accept_step(self, user_id: UUID, step: int) -> bool:
        """Remember `step` as used, if it is later than the last one (atomic: no replay)."""
        result = await self._conn.execute(
            update(mfa_totp)
            .where(
                mfa_totp.c.user_id == user_id,
                (mfa_totp.c.last_used_step.is_(None)) | (mfa_totp.c.last_used_step < step),
            )
            .values(last_used_step=step)
        )
        return result.rowcount == 1

    async def confirm(self, user_id: UUID, *, now: datetime) -> bool:
        """Turn the pending enrolment on."""
        result = await self._conn.execute(
            update(mfa_totp)
            .where(mfa_totp.c.user_id == user_id, mfa_totp.c.confirmed_at.is_(None))
            .values(confirmed_at=now)
        )
        return result.rowcount == 1

    async def replace_recovery_codes(
        self, user_id: UUID, digests: list[bytes], *, now: datetime
    ) -> None:
        """Forget the user's recovery codes and store these instead."""
        await self._conn.execute(
            delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id)
        )
        rows = [{"code_hash": d, "user_id": user_id, "created_at": now} for d in digests]
        await self._conn.execute(insert(mfa_recovery_codes), rows)

    async def spend_recovery_code(
        self, user_id: UUID, digests: Sequence[bytes], *, now: datetime
    ) -> bool:
        """Mark the code used if it is the user's and unused (atomic: it works once)."""
        result = await self._conn.execute(
            update(mfa_recovery_codes)
            .where(
                mfa_recovery_codes.c.code_hash.in_(list(digests)),
                mfa_recovery_codes.c.user_id == user_id,
                mfa_recovery_codes.c.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return result.rowcount == 1

    async def replace_secret(self, user_id: UUID, ciphertext: bytes) -> None:
        """Store the same secret encrypted anew (after a key rotation)."""
        await self._conn.execute(
            update(mfa_totp)
            .where(mfa_totp.c.user_id == user_id)
            .values(secret_ciphertext=ciphertext)
        )

    async def unused_recovery_codes(self, user_id: UUID) -> int:
        """How many of the user's recovery codes are left."""
        query = select(func.count()).where(
            mfa_recovery_codes.c.user_id == user_id, mfa_recovery_codes.c.used_at.is_(None)
        )
        return int((await self._conn.execute(query)).scalar_one())

    async def remove(self, user_id: UUID) -> bool:
        """Forget the user's TOTP and recovery codes; whether TOTP was confirmed."""
        await self._conn.execute(
            delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id)
        )
        result = await self._conn.execute(
            delete(mfa_totp).where(mfa_totp.c.user_id == user_id).returning(mfa_totp.c.confirmed_at)
        )
        row = result.first()
        return row is not None and row.confirmed_at is not None
