"""ProfileProjection: a profile row per registered user, kept up to date, removed on deletion."""

from typing import Any, ClassVar

from sqlalchemy import delete, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.profiles.answers import answer_registrations, create_answer_outbox
from downstream_examples.profiles.tables import SCHEMA, SCHEMA_UPGRADES, metadata, profiles
from events import Envelope, Event, UserDeleted, UserRegistered, UserUpdated


class ProfileProjection(Projection):
    """Keeps `profiles.profiles` from UserRegistered, UserUpdated and UserDeleted."""

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(
        {UserRegistered, UserUpdated, UserDeleted}
    )
    metadata = metadata

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create the tables, then bring a table made by an older version up to date."""
        await super().create_tables(conn)
        for statement in SCHEMA_UPGRADES:
            await conn.execute(text(statement))
        await create_answer_outbox(conn)

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Insert the profile on registration, change it on update, delete it on deletion."""
        match event:
            case UserRegistered():
                # The registration saga: a pending user's registration is answered (and
                # refused ones get no profile); see answers.py.
                for accepted in await answer_registrations(conn, [event]):
                    await _register(conn, accepted)
            case UserUpdated():
                await _update(conn, event)
            case UserDeleted():
                await conn.execute(delete(profiles).where(profiles.c.user_id == event.user_id))


async def _register(conn: AsyncConnection, event: UserRegistered) -> None:
    row = {
        "user_id": event.user_id,
        "username": event.username,
        "email": event.email,
        "display_name": event.display_name,
        "registered_at": event.registered_at,
        "updated_at": event.registered_at,
    }
    # Idempotent by itself too: a registration seen again leaves the row as it is, so it
    # cannot undo updates applied since.
    await conn.execute(
        insert(profiles).values(row).on_conflict_do_nothing(index_elements=[profiles.c.user_id])
    )


async def _update(conn: AsyncConnection, event: UserUpdated) -> None:
    # UserUpdated is sparse: a field absent from the event did not change (the model's
    # default None must not be written), while display_name present as None was cleared.
    present = event.model_fields_set
    changes: dict[str, Any] = {}
    if "email" in present and event.email is not None:
        changes["email"] = event.email
    if "display_name" in present:
        changes["display_name"] = event.display_name
    if not changes:
        return  # only fields this view does not keep changed (a newer producer's, say)
    # Setting values (never incrementing) makes the same update twice leave one result;
    # the tracking records keep an older update from landing after a newer one.
    await conn.execute(
        update(profiles)
        .where(profiles.c.user_id == event.user_id)
        .values(**changes, updated_at=event.updated_at)
    )
