"""DirectoryProjection: the event path of the lazy directory."""

from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.lazy_directory.members import change_role, forget, record_registration
from downstream_examples.lazy_directory.tables import SCHEMA, metadata
from events import Envelope, Event, UserDeleted, UserRegistered, UserRoleChanged


class DirectoryProjection(Projection):
    """Keeps `directory.members` and its tombstones from registrations, roles and deletions."""

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(
        {UserRegistered, UserRoleChanged, UserDeleted}
    )
    metadata = metadata

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
