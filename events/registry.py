"""Type name <-> event class, and conversion between events and envelopes."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import ValidationError

from events.base import Envelope, Event
from events.errors import MalformedEventError, UnknownEventTypeError
from events.profile import ProfileCreated, ProfileRejected
from events.user import (
    MfaDisabled,
    MfaEnabled,
    PasswordChanged,
    PasswordResetRequested,
    UserDeleted,
    UserEmailVerified,
    UserRegistered,
    UserRoleChanged,
    UserStatusChanged,
    UserUpdated,
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type_name(): cls
    for cls in (
        UserRegistered,
        PasswordChanged,
        UserDeleted,
        UserUpdated,
        UserRoleChanged,
        UserStatusChanged,
        PasswordResetRequested,
        UserEmailVerified,
        ProfileCreated,
        ProfileRejected,
        MfaEnabled,
        MfaDisabled,
    )
}


def to_envelope(
    event: Event,
    *,
    sequence: int,
    source: str,
    event_id: UUID | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    """Wrap an event in its CloudEvents envelope (with the trace context that caused it)."""
    return Envelope(
        id=event_id or uuid4(),
        source=source,
        type=event.type_name(),
        subject=str(event.user_id),
        time=time or datetime.now(UTC),
        sequence=sequence,
        data=event.model_dump(mode="json", exclude_unset=event.sparse),
        traceparent=traceparent,
        tracestate=tracestate if traceparent else None,
    )


def envelope_from_json(raw: bytes | str) -> Envelope:
    """Parse an envelope from its JSON form; MalformedEventError if it is not one."""
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as exc:
        raise MalformedEventError(_summarise(exc)) from exc


def event_from_envelope(envelope: Envelope) -> Event:
    """The typed event inside an envelope.

    UnknownEventTypeError for a type this contract does not know (a newer producer);
    MalformedEventError when the data does not fit the type or contradicts the envelope.
    """
    cls = EVENT_TYPES.get(envelope.type)
    if cls is None:
        raise UnknownEventTypeError(envelope.type)
    try:
        event = cls.model_validate(envelope.data)
    except ValidationError as exc:
        raise MalformedEventError(_summarise(exc)) from exc
    if event.user_id != envelope.user_id:
        raise MalformedEventError("data.user_id differs from subject")
    return event


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the envelope and of every event's `data`, keyed by type name."""
    schemas: dict[str, Any] = {"Envelope": Envelope.model_json_schema()}
    schemas.update({name: cls.model_json_schema() for name, cls in EVENT_TYPES.items()})
    return schemas


def _summarise(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
