"""ProfileProjection: a profile row per registered user, removed when the user is deleted."""

from typing import ClassVar

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.profiles.tables import SCHEMA, metadata, profiles
from events import Envelope, Event, UserDeleted, UserRegistered


class ProfileProjection(Projection):
    """Keeps `profiles.profiles` from UserRegistered and UserDeleted."""

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset({UserRegistered, UserDeleted})
    metadata = metadata

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Insert the profile on registration, delete it on deletion."""
        match event:
            case UserRegistered():
                row = {
                    "user_id": event.user_id,
                    "username": event.username,
                    "email": event.email,
                    "registered_at": event.registered_at,
                }
                # Idempotent by itself too: the same registration twice leaves one row.
                await conn.execute(
                    insert(profiles)
                    .values(row)
                    .on_conflict_do_update(index_elements=[profiles.c.user_id], set_=row)
                )
            case UserDeleted():
                await conn.execute(delete(profiles).where(profiles.c.user_id == event.user_id))
