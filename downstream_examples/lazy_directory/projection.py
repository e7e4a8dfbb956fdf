"""DirectoryProjection: the event path of the lazy directory."""

from typing import ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.projection import Projection
from downstream_examples.lazy_directory.members import change_role, forget, record_registration
from downstream_examples.lazy_directory.tables import SCHEMA, deleted_users, members, metadata
from events import Envelope, Event, UserDeleted, UserRegistered, UserRoleChanged


class DirectoryProjection(Projection):
    """Keeps `directory.members` and its tombstones from registrations, roles and deletions.

    A replay rebuilds `members` from the events and keeps the tombstones
    (`deleted_users`): the rebuilding instance reads and writes the live ones, so a
    deleted user's token stays refused throughout. What only tokens brought (members no
    event confirmed yet, the sightings) is carried over at the swap.
    """

    name: ClassVar[str] = SCHEMA
    handles: ClassVar[frozenset[type[Event]]] = frozenset(
        {UserRegistered, UserRoleChanged, UserDeleted}
    )
    metadata = metadata
    kept_tables: ClassVar[frozenset[str]] = frozenset({deleted_users.name})

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        """Create or confirm on registration, follow role changes, forget on deletion."""
        table = self.table(members)
        match event:
            case UserRegistered():
                await record_registration(
                    conn, event.user_id, event.username, event.role, envelope.time, table=table
                )
            case UserRoleChanged():
                await change_role(conn, event.user_id, event.new_role, envelope.time, table=table)
            case UserDeleted():
                await forget(conn, event.user_id, event.deleted_at, table=table)

    async def carry_over(self, conn: AsyncConnection) -> None:
        """Take the live members as tokens left them: when first seen, last seen, token-only.

        A member the events also brought keeps what they say (name, role, source), with
        the live first sighting (it never moves) and the later of the two last sightings.
        A member with a tombstone stays gone.
        """
        shadow, live = self.schema, self.name
        await conn.execute(
            text(
                f'INSERT INTO "{shadow}".members AS s '
                "(user_id, username, role, first_seen_at, last_seen_at, source) "
                "SELECT l.user_id, l.username, l.role, l.first_seen_at, l.last_seen_at, l.source "
                f'FROM "{live}".members l WHERE NOT EXISTS '
                f'(SELECT 1 FROM "{live}".deleted_users d WHERE d.user_id = l.user_id) '
                "ON CONFLICT (user_id) DO UPDATE SET first_seen_at = excluded.first_seen_at, "
                "last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at)"
            )
        )
