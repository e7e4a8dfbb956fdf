"""ProfileProjection: a profile row per registered user, kept up to date, removed on deletion."""

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import Table, delete, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from consumers.replay.raw import BulkRows
from consumers.replay.sql_rows import SqlRows
from downstream_examples.profiles.answers import answer_registrations, create_answer_outbox
from downstream_examples.profiles.bulk import ProfileBulkRows
from downstream_examples.profiles.sql_rows import ProfileSqlRows
from downstream_examples.profiles.tables import SCHEMA, metadata, profiles, schema_upgrades
from events import Envelope, Event, UserDeleted, UserRegistered, UserUpdated


class ProfileProjection(Projection):
    """Keeps `profiles.profiles` from UserRegistered, UserUpdated and UserDeleted.

    A replay rebuilds the profile table. It keeps the answers' outbox (`profiles.outbox`
    and `outbox_pending`, the registration saga's): the auth service acted on those
    answers, so a rebuilt view follows them as they were given (answers.py).
    """

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(
        {UserRegistered, UserUpdated, UserDeleted}
    )
    metadata = metadata
    kept_tables: ClassVar[frozenset[str]] = frozenset({"outbox", "outbox_pending"})

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create the tables, then bring a table made by an older version up to date.

        The answers' outbox is created with the live tables (a replay's shadow uses those).
        """
        await super().create_tables(conn)
        for statement in schema_upgrades(self.schema):
            await conn.execute(text(statement))
        if self.schema == self.name:
            await create_answer_outbox(conn)

    def bulk_rows(self) -> BulkRows:
        """Registrations, updates and deletions of active users, straight from their JSON."""
        return ProfileBulkRows()

    def sql_rows(self) -> SqlRows:
        """The same fold in SQL, when the event log is in the projection's database."""
        return ProfileSqlRows()

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        """Apply in order, inserting each run of consecutive registrations in one statement."""
        registrations: list[tuple[UserRegistered, Envelope]] = []
        for event, envelope in batch:
            if isinstance(event, UserRegistered):
                registrations.append((event, envelope))
                continue
            # An update or deletion may concern a user registered earlier in this run.
            await self._register_all(conn, registrations)
            registrations.clear()
            await self.apply(conn, event, envelope)
        await self._register_all(conn, registrations)

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Insert the profile on registration, change it on update, delete it on deletion."""
        table = self.table(profiles)
        match event:
            case UserRegistered():
                await self._register_all(conn, [(event, envelope)])
            case UserUpdated():
                await _update(conn, table, event)
            case UserDeleted():
                await conn.execute(delete(table).where(table.c.user_id == event.user_id))

    async def _register_all(
        self, conn: AsyncConnection, registrations: Sequence[tuple[UserRegistered, Envelope]]
    ) -> None:
        if not registrations:
            return
        # The registration saga: a pending user's registration is answered, and a refused
        # one gets no profile (see answers.py).
        events = await answer_registrations(conn, registrations)
        if events:
            await _insert(conn, self.schema, events)


async def _insert(conn: AsyncConnection, schema: str, events: Sequence[UserRegistered]) -> None:
    # One INSERT for the lot, the columns as arrays. Idempotent by itself too: a
    # registration seen again leaves the row as it is, so it cannot undo updates applied since.
    await conn.execute(
        text(
            f'INSERT INTO "{schema}".profiles '
            "(user_id, username, email, display_name, registered_at, updated_at) "
            "SELECT u, n, e, d, r, r FROM unnest(CAST(:user_ids AS uuid[]), "
            "CAST(:usernames AS text[]), CAST(:emails AS text[]), "
            "CAST(:display_names AS text[]), CAST(:registered_at AS timestamptz[])) "
            "AS p(u, n, e, d, r) ON CONFLICT (user_id) DO NOTHING"
        ),
        {
            "user_ids": [e.user_id for e in events],
            "usernames": [e.username for e in events],
            "emails": [e.email for e in events],
            "display_names": [e.display_name for e in events],
            "registered_at": [e.registered_at for e in events],
        },
    )


async def _update(conn: AsyncConnection, table: Table, event: UserUpdated) -> None:
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
        update(table)
        .where(table.c.user_id == event.user_id)
        .values(**changes, updated_at=event.updated_at)
    )
