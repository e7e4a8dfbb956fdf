"""The base event class and the CloudEvents 1.0 envelope every event travels in."""

import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from events.tracing import (
    TRACEPARENT_PATTERN,
    TRACESTATE_PATTERN,
    valid_traceparent,
    valid_tracestate,
)


class Event(BaseModel):
    """A fact about one user; the class name is the wire `type`. Never carries a secret."""

    # extra="ignore": a newer producer may add optional fields to an event; an older consumer
    # must still read it (the contract only ever adds optional fields to a type).
    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: UUID
    # A sparse event carries only the fields that were set (UserUpdated: the changed ones).
    sparse: ClassVar[bool] = False

    @classmethod
    def type_name(cls) -> str:
        """The CloudEvents `type` of this event class."""
        return cls.__name__


def _absent(value: object) -> bool:
    return value is None


# Optional and left out of the JSON when absent (no `null` on the wire); a malformed value
# is dropped rather than refused: tracing must never cost an event.
TraceParent = Annotated[
    str | None,
    BeforeValidator(valid_traceparent),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TRACEPARENT_PATTERN,
            "description": "W3C traceparent of the request that caused the event",
        }
    ),
    Field(exclude_if=_absent),
]
TraceState = Annotated[
    str | None,
    BeforeValidator(valid_tracestate),
    WithJsonSchema(
        {"type": "string", "pattern": TRACESTATE_PATTERN, "description": "W3C tracestate"}
    ),
    Field(exclude_if=_absent),
]

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    subject: str = Field(min_length=1, description="the user id (a UUID)")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    sequence: int = Field(ge=1)
    data: dict[str, Any]
    # The CloudEvents distributed-tracing extension attributes.
    traceparent: TraceParent = None
    tracestate: TraceState = None

    @field_validator("subject")
    @classmethod
    def _subject_is_a_user_id(cls, value: str) -> str:
        # Normalised, so that an upper-case UUID still equals data.user_id. The canonical
        # form, as every producer of ours writes it, is let through without parsing: every
        # consumer validates every envelope, and the parse was a large part of its cost
        # (bench/README.md, "Figures behind the code").
        if _CANONICAL_UUID.fullmatch(value):
            return value
        return str(UUID(value))

    @cached_property
    def user_id(self) -> UUID:
        """The user the event is about (the CloudEvents `subject`)."""
        return UUID(self.subject)
