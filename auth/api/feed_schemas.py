"""Response bodies of the event feed (GET /events) and of the client-credentials grant."""

from typing import Literal

from pydantic import BaseModel, Field

from events import Envelope

# Positions are outbox ids (PostgreSQL bigint); sequences are per-user (integer).
MAX_POSITION = 2**63 - 1
MAX_SEQUENCE = 2**31 - 1
MAX_PAGE = 1000


class FeedEntry(BaseModel):
    """One event of the log: its position, and the CloudEvent exactly as it was recorded."""

    position: int = Field(ge=1, description="the event's place in the log (the outbox id)")
    event: Envelope = Field(description="a CloudEvents 1.0 event in structured JSON mode")


class FeedPage(BaseModel):
    """Events after the requested position, in log order, and where the next page starts."""

    entries: list[FeedEntry]
    next: int = Field(ge=0, description="pass as `after` for the next page (also in `Link`)")
    caught_up: bool = Field(description="true when nothing more is committed right now")


class FeedHead(BaseModel):
    """A position every event committed now is at or below."""

    head: int = Field(ge=0)


class UserEvents(BaseModel):
    """One user's events after the requested sequence, in sequence order."""

    events: list[Envelope]


class ServiceTokenOut(BaseModel):
    """An access token for a service client (no refresh token: ask again, RFC 6749 4.4.3)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    scope: str = Field(description="the scopes granted, space-separated")
