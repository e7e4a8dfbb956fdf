"""Reading profiles: lookups by user id and by username, and the error when none matches."""

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from downstream_examples.profiles.tables import profiles


class Profile(BaseModel):
    """One user's profile as this service knows it."""

    user_id: UUID
    username: str
    email: str
    display_name: str | None
    registered_at: datetime
    # Null only for rows written before the column existed and not updated since.
    updated_at: datetime | None


class ProfileNotFoundError(Exception):
    """No profile matches; `field` and `value` say what was looked for."""

    code = "profile_not_found"

    def __init__(self, field: str, value: object) -> None:
        self.field = field
        self.value = value
        super().__init__(f"no profile with {field} {value}")


async def profile_by_id(conn: AsyncConnection, user_id: UUID) -> Profile:
    """The profile of `user_id`; ProfileNotFoundError if there is none."""
    return await _one(conn, select(profiles).where(profiles.c.user_id == user_id), "id", user_id)


async def profile_by_username(conn: AsyncConnection, username: str) -> Profile:
    """The profile whose username equals `username` ignoring case; ProfileNotFoundError if none."""
    query = (
        select(profiles)
        .where(func.lower(profiles.c.username) == func.lower(username))
        # Users on different Kafka partitions are applied in no common order: a deleted
        # user's name may be taken again before its deletion arrives. The newer one wins.
        .order_by(profiles.c.registered_at.desc())
        .limit(1)
    )
    return await _one(conn, query, "username", username)


async def _one(
    conn: AsyncConnection, query: Select[tuple[object, ...]], field: str, value: object
) -> Profile:
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise ProfileNotFoundError(field, value)
    return Profile.model_validate(dict(row))
