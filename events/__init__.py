"""The userbus event contract: lifecycle events of a user, the profile service's answers, and
their CloudEvents envelope."""

from events.base import Envelope, Event
from events.channels import DEFAULT_STREAM, PROFILE_STREAM, dead_letter_stream
from events.errors import EventError, MalformedEventError, UnknownEventTypeError
from events.profile import ProfileCreated, ProfileRejected
from events.registry import (
    EVENT_TYPES,
    envelope_from_json,
    event_from_envelope,
    json_schemas,
    to_envelope,
)
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

__all__ = [
    "DEFAULT_STREAM",
    "EVENT_TYPES",
    "PROFILE_STREAM",
    "Envelope",
    "Event",
    "EventError",
    "MalformedEventError",
    "MfaDisabled",
    "MfaEnabled",
    "PasswordChanged",
    "PasswordResetRequested",
    "ProfileCreated",
    "ProfileRejected",
    "UnknownEventTypeError",
    "UserDeleted",
    "UserEmailVerified",
    "UserRegistered",
    "UserRoleChanged",
    "UserStatusChanged",
    "UserUpdated",
    "dead_letter_stream",
    "envelope_from_json",
    "event_from_envelope",
    "json_schemas",
    "to_envelope",
]
