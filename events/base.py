"""The base event class and the CloudEvents 1.0 envelope every event travels in."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """A fact about one user; the class name is the wire `type`. Never carries a secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: UUID

    @classmethod
    def type_name(cls) -> str:
        """The CloudEvents `type` of this event class."""
        return cls.__name__


class Envelope(BaseModel):
    """CloudEvents 1.0 attributes (structured JSON mode) plus the user's `sequence`.

    `sequence` is the user's version after the change: 1 for the registration, +1 per change,
    so a consumer can tell a duplicate (sequence already applied) from a gap.
    """

    # extra="ignore": a newer producer may add CloudEvents extension attributes that an older
    # consumer does not know; they must not make the event unreadable.
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    sequence: int = Field(ge=1)
    data: dict[str, Any]

    @property
    def user_id(self) -> UUID:
        """The user the event is about (the CloudEvents `subject`)."""
        return UUID(self.subject)
