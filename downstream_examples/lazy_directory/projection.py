"""DirectoryProjection: the event path of the lazy directory."""

from typing import ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.lazy_directory.members import change_role, forget, record_registration
from downstream_examples.lazy_directory.tables import SCHEMA, metadata
from events import Envelope, Event, UserDeleted, UserRegistered, UserRoleChanged

# The API and the consumer both create the tables at start: serialise them (two concurrent
# CREATE SCHEMA IF NOT EXISTS can still fail with a unique violation).
_SETUP_LOCK = "SELECT pg_advisory_xact_lock(hashtext('userbus.directory.create_tables'))"


class DirectoryProjection(Projection):
    """Keeps `directory.members` and its tombstones from registrations, roles and deletions."""

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(
        {UserRegistered, UserRoleChanged, UserDeleted}
    )
    metadata = metadata

    async def create_tables(self, conn: AsyncConnection) -> None:
        """Create the schema and tables if missing, one process at a time."""
        await conn.execute(text(_SETUP_LOCK))
        await super().create_tables(conn)

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Create or confirm on registration, follow role changes, forget on deletion."""
        match event:
            case UserRegistered():
                await record_registration(
                    conn, event.user_id, event.username, event.role, envelope.time
                )
            case UserRoleChanged():
                await change_role(conn, event.user_id, event.new_role, envelope.time)
            case UserDeleted():
                await forget(conn, event.user_id, event.deleted_at)
