"""What a session list shows: where a session is used from, and when it was last used."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

# Longer user agents are cut: the list only needs to tell a phone from a browser, and an
# unbounded header must not become an unbounded row.
MAX_USER_AGENT = 256


@dataclass(frozen=True)
class Client:
    """Where a request came from: its address and its (truncated) User-Agent header."""

    address: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, address: str | None, user_agent: str | None) -> "Client":
        """A client with the user agent cut to MAX_USER_AGENT characters (NULs removed)."""
        if user_agent is not None:
            user_agent = user_agent.replace("\x00", "")[:MAX_USER_AGENT] or None
        return cls(address=address, user_agent=user_agent)


@dataclass(frozen=True)
class SessionInfo:
    """A live session as its owner (or an admin) sees it.

    `last_used_at` is the session's login or its latest refresh: a session is "used" when it
    gets tokens, so that the bearer check on every request stays a read, never a write.
    """

    id: UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    client_address: str | None
    user_agent: str | None
