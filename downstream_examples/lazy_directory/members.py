"""How the directory learns about a user, from a verified token or from an event.

Both paths write the same row, so they converge: a token only fills in a member the events
have not brought yet (and never overwrites what they said, since a token may be 15 minutes
old), events are the truth once they arrive, and a deletion leaves a tombstone that no
still-valid token can get past. Each path locks the user (a transaction-scoped advisory
lock) before it reads the tombstone, so a token checked while the deletion commits waits
for it and is refused, rather than slipping in between the check and the insert.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.jwks import VerifiedClaims
from downstream_examples.lazy_directory.tables import deleted_users, members

Source = Literal["token", "event"]


class UserDeletedError(Exception):
    """The token's user was deleted; its token may still verify, but the user is gone."""

    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"user {user_id} was deleted")
        self.user_id = user_id


@dataclass(frozen=True)
class Member:
    """A user this directory knows, and how it came to know them."""

    user_id: UUID
    username: str
    role: str
    first_seen_at: datetime
    last_seen_at: datetime
    source: Source


async def admit_token_holder(conn: AsyncConnection, claims: VerifiedClaims) -> Member:
    """The member a verified token names, created on first sight; UserDeletedError if deleted."""
    await _lock_user(conn, claims.user_id)
    if await _is_deleted(conn, claims.user_id):
        raise UserDeletedError(claims.user_id)
    now = func.now()
    statement = insert(members).values(
        user_id=claims.user_id,
        username=claims.username,
        role=claims.role,
        first_seen_at=now,
        last_seen_at=now,
        source="token",
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[members.c.user_id],
        # Only the sighting: what events said about a known member stays as it is.
        set_={"last_seen_at": func.greatest(members.c.last_seen_at, now)},
    ).returning(*members.c)
    row = (await conn.execute(upsert)).one()
    return Member(**row._mapping)


async def record_registration(
    conn: AsyncConnection,
    user_id: UUID,
    username: str,
    role: str,
    at: datetime,
    *,
    table: Table = members,
) -> None:
    """Create the member, or confirm the one a token created, with the event's data.

    `table` is the members table written (a replay's shadow one; tombstones are shared).
    """
    await _lock_user(conn, user_id)
    if await _is_deleted(conn, user_id):
        return  # a replayed registration must not bring a deleted user back
    statement = insert(table).values(
        user_id=user_id,
        username=username,
        role=role,
        first_seen_at=at,
        last_seen_at=at,
        source="event",
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.user_id],
            set_={
                "username": statement.excluded.username,
                "role": statement.excluded.role,
                "source": "event",
                "last_seen_at": func.greatest(table.c.last_seen_at, at),
            },
        )
    )


async def change_role(
    conn: AsyncConnection, user_id: UUID, role: str, at: datetime, *, table: Table = members
) -> None:
    """Give a known member their new role (an unknown one gets it from their next token)."""
    await conn.execute(
        update(table)
        .where(table.c.user_id == user_id)
        .values(role=role, last_seen_at=func.greatest(table.c.last_seen_at, at))
    )


async def forget(
    conn: AsyncConnection, user_id: UUID, deleted_at: datetime, *, table: Table = members
) -> None:
    """Remove the member, however it was created, and remember that the user is gone."""
    await _lock_user(conn, user_id)
    await conn.execute(delete(table).where(table.c.user_id == user_id))
    await conn.execute(
        insert(deleted_users)
        .values(user_id=user_id, deleted_at=deleted_at)
        .on_conflict_do_nothing(index_elements=[deleted_users.c.user_id])
    )


async def _lock_user(conn: AsyncConnection, user_id: UUID) -> None:
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"directory.member:{user_id}"},
    )


async def _is_deleted(conn: AsyncConnection, user_id: UUID) -> bool:
    query = select(deleted_users.c.user_id).where(deleted_users.c.user_id == user_id)
    return (await conn.execute(query)).first() is not None
