"""The lifecycle events of a user account."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import StringConstraints

from events.base import Event

# The auth service validates addresses fully (email-validator) where they enter the system;
# in the contract a cheap shape check is enough, and every consumer parses every event:
# email-validator dominated an event's validation time (bench/README.md).
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]

Role = Literal["user", "admin"]
Status = Literal["active", "disabled", "pending"]


class UserRegistered(Event):
    """A new account exists.

    `status` is `pending` when the auth service waits for the profile service's answer
    (ProfileCreated or ProfileRejected) before it activates the account; older events lack
    the field and were all active.
    """

    username: str
    email: Email
    role: Role
    registered_at: datetime
    display_name: str | None = None
    status: Status = "active"
    # Whether the address was proven by a mailed token (UserEmailVerified); a new account's
    # never is. Older events lack the field: their accounts were not verified either.
    email_verified: bool = False


class PasswordChanged(Event):
    """The user's password was replaced; `reason` says by whom or why."""

    changed_at: datetime
    reason: Literal["change", "reset", "admin"]


class UserDeleted(Event):
    """The account is gone; consumers should forget the user."""

    username: str
    deleted_at: datetime
    # A plain string, not a Literal: a newer producer may add reasons and older consumers
    # must still read the event.
    reason: str = "requested"


class UserUpdated(Event):
    """Profile fields changed; `data` holds only the fields that changed.

    A field absent from `data` did not change; `display_name` present as null was cleared.
    Use `event.model_fields_set` to tell which fields are present. A new `email` comes with
    `email_verified: false` (the new address is not proven yet); older events lack it.
    """

    sparse = True

    updated_at: datetime
    email: Email | None = None
    display_name: str | None = None
    email_verified: bool | None = None


class UserRoleChanged(Event):
    """An admin gave the user another role."""

    old_role: Role
    new_role: Role
    changed_at: datetime


class UserStatusChanged(Event):
    """The account was disabled or enabled (a disabled user cannot log in)."""

    old_status: Status
    new_status: Status
    changed_at: datetime


class PasswordResetRequested(Event):
    """Someone asked for a reset link for this account (the token is never in the event)."""

    requested_at: datetime


class MfaEnabled(Event):
    """The user turned on a second factor. The secret never leaves the auth service."""

    # A plain string: a newer producer may add methods (only `totp` so far).
    method: str = "totp"
    enabled_at: datetime


class MfaDisabled(Event):
    """The user's second factor was turned off: by the user (`user`) or an admin (`admin`)."""

    method: str = "totp"
    disabled_at: datetime
    reason: str = "user"


class UserEmailVerified(Event):
    """The user proved they receive mail at `email` (the token itself is never in the event)."""

    email: Email
    verified_at: datetime
