"""Service clients: other services' credentials for reading the event feed (GET /events).

A service client is not a user. A user's token, even an admin's, would let whoever holds it
read every user's events, and it lives and dies with a person's account; a service client is
made for one reading service, carries only the scope it needs, and is revoked on its own.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from auth.domain.errors import InvalidServiceNameError

# The one scope there is: reading the event log through the feed.
EVENTS_READ = "events:read"
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def check_service_name(name: str) -> None:
    """Raise InvalidServiceNameError unless `name` fits SERVICE_NAME_PATTERN."""
    if not re.fullmatch(SERVICE_NAME_PATTERN, name):
        raise InvalidServiceNameError(name)


@dataclass(frozen=True)
class ServiceClient:
    """A reading service's credentials (the secret itself is never kept, only its digest)."""

    id: UUID
    name: str
    client_id: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the client may still get tokens and read with them."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether the client was granted `scope` (scopes are space-separated, RFC 6749 3.3)."""
        return scope in self.scope.split()


@dataclass(frozen=True)
class ServicePrincipal:
    """A service proven by a verified service token: its client id, name and scopes."""

    client_id: str
    name: str
    scopes: frozenset[str]
