"""The User aggregate: every change bumps its version and records the matching event."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

from auth.domain.errors import InvalidUsernameError
from events import (
    Event,
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

# The contract defines them (consumers read them from the events): one definition.
from events.user import Role as Role
from events.user import Status as Status

# What an admin may set; `pending` is only ever the registration saga's.
SettableStatus = Literal["active", "disabled"]
PasswordChangeReason = Literal["change", "reset", "admin"]
ProfileField = Literal["email", "display_name"]

# The one username rule: the HTTP schema puts it in the OpenAPI document, the use cases check it.
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


def check_username(username: str) -> None:
    """Raise InvalidUsernameError unless `username` fits USERNAME_PATTERN."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidUsernameError(username)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified access token, and from which session."""

    user_id: UUID
    username: str
    role: Role
    session_id: UUID | None = None

    @property
    def is_admin(self) -> bool:
        """Whether the token grants admin rights."""
        return self.role == "admin"


@dataclass
class User:
    """An account; `version` is the sequence number of the last event about it."""

    id: UUID
    username: str
    email: str
    password_hash: str
    role: Role
    status: Status
    created_at: datetime
    updated_at: datetime
    version: int
    display_name: str | None = None
    # Proven by a mailed token (verify_email); a new email address is unproven again.
    email_verified: bool = False
    email_verified_at: datetime | None = None
    # (sequence, event) pairs recorded since load; the unit of work writes them to the outbox
    # in the same transaction as the state change.
    events: list[tuple[int, Event]] = field(default_factory=list, repr=False, compare=False)
    deleted: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def register(
        cls,
        *,
        username: str,
        email: str,
        password_hash: str,
        now: datetime,
        role: Role = "user",
        display_name: str | None = None,
        pending: bool = False,
    ) -> "User":
        """A new account, with its UserRegistered event as sequence 1.

        A `pending` account (the registration saga) cannot log in until the profile service
        has answered: `complete_registration` activates it, `fail_registration` deletes it.
        """
        status: Status = "pending" if pending else "active"
        user = cls(
            id=uuid4(),
            username=username,
            email=email,
            password_hash=password_hash,
            role=role,
            status=status,
            created_at=now,
            updated_at=now,
            version=0,
            display_name=display_name,
        )
        registered = UserRegistered(
            user_id=user.id,
            username=username,
            email=email,
            role=role,
            registered_at=now,
            display_name=display_name,
            status=status,
        )
        user._record(registered, now)
        return user

    def change_password(
        self, password_hash: str, *, reason: PasswordChangeReason, now: datetime
    ) -> None:
        """Replace the password hash."""
        self.password_hash = password_hash
        self._record(PasswordChanged(user_id=self.id, changed_at=now, reason=reason), now)

    def update_profile(self, changes: dict[ProfileField, str | None], *, now: datetime) -> None:
        """Apply the fields that differ; records UserUpdated with just those, or nothing.

        A new email is unverified: the event says `email_verified: false` with it.
        """
        changed = {name: value for name, value in changes.items() if getattr(self, name) != value}
        if not changed:
            return
        for name, value in changed.items():
            setattr(self, name, value)
        if "email" not in changed:
            self._record(UserUpdated(user_id=self.id, updated_at=now, **changed), now)
            return
        self.email_verified, self.email_verified_at = False, None
        self._record(
            UserUpdated(user_id=self.id, updated_at=now, email_verified=False, **changed), now
        )

    def verify_email(self, email: str, *, now: datetime) -> bool:
        """Mark `email` proven if it is still the user's; whether it is (UserEmailVerified).

        Verifying an address already verified records nothing more.
        """
        if email.casefold() != self.email.casefold():
            return False
        if not self.email_verified:
            self.email_verified, self.email_verified_at = True, now
            self._record(UserEmailVerified(user_id=self.id, email=self.email, verified_at=now), now)
        return True

    def change_role(self, role: Role, *, now: datetime) -> None:
        """Give the user another role (no event when it is the same)."""
        if role == self.role:
            return
        old, self.role = self.role, role
        self._record(
            UserRoleChanged(user_id=self.id, old_role=old, new_role=role, changed_at=now), now
        )

    def change_status(self, status: Status, *, now: datetime) -> None:
        """Disable, enable or activate the account (no event when it is the same)."""
        if status == self.status:
            return
        old, self.status = self.status, status
        self._record(
            UserStatusChanged(user_id=self.id, old_status=old, new_status=status, changed_at=now),
            now,
        )

    def request_password_reset(self, *, now: datetime) -> None:
        """Record that a reset link was requested (the token itself is never an event)."""
        self._record(PasswordResetRequested(user_id=self.id, requested_at=now), now)

    def enable_mfa(self, *, now: datetime) -> None:
        """Record that a TOTP second factor is now required to log in (never its secret)."""
        self._record(MfaEnabled(user_id=self.id, method="totp", enabled_at=now), now)

    def disable_mfa(self, *, now: datetime, reason: str) -> None:
        """Record that the second factor is off: `user` turned it off, or an `admin` reset it."""
        self._record(
            MfaDisabled(user_id=self.id, method="totp", disabled_at=now, reason=reason), now
        )

    def delete(self, *, now: datetime, reason: str = "requested") -> None:
        """Mark the account for deletion; the repository removes the row."""
        self.deleted = True
        self._record(
            UserDeleted(user_id=self.id, username=self.username, deleted_at=now, reason=reason),
            now,
        )

    def complete_registration(self, *, now: datetime) -> bool:
        """Activate a pending account (its profile exists); whether anything changed.

        Only a pending account changes: an answer arriving again, or after an admin settled
        the account, or after the registration expired, is no business of the saga any more.
        """
        if self.deleted or self.status != "pending":
            return False
        self.change_status("active", now=now)
        return True

    def fail_registration(self, *, now: datetime, reason: str) -> bool:
        """Delete a pending account (compensation); whether anything changed.

        `reason` goes into UserDeleted: `registration_failed` (the profile service refused)
        or `registration_expired` (no answer in time). A settled account is left as it is.
        """
        if self.deleted or self.status != "pending":
            return False
        self.delete(now=now, reason=reason)
        return True

    def _record(self, event: Event, now: datetime) -> None:
        self.version += 1
        self.updated_at = now
        self.events.append((self.version, event))
