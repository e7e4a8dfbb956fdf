"""The User aggregate: every change bumps its version and records the matching event."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

from events import Event, PasswordChanged, UserDeleted, UserRegistered

Role = Literal["user", "admin"]
Status = Literal["active", "disabled", "pending"]
PasswordChangeReason = Literal["change", "reset", "admin"]


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
    ) -> "User":
        """A new active account, with its UserRegistered event as sequence 1."""
        user = cls(
            id=uuid4(),
            username=username,
            email=email,
            password_hash=password_hash,
            role=role,
            status="active",
            created_at=now,
            updated_at=now,
            version=0,
        )
        user._record(
            UserRegistered(
                user_id=user.id, username=username, email=email, role=role, registered_at=now
            ),
            now,
        )
        return user

    def change_password(
        self, password_hash: str, *, reason: PasswordChangeReason, now: datetime
    ) -> None:
        """Replace the password hash."""
        self.password_hash = password_hash
        self._record(PasswordChanged(user_id=self.id, changed_at=now, reason=reason), now)

    def delete(self, *, now: datetime, reason: str = "requested") -> None:
        """Mark the account for deletion; the repository removes the row."""
        self.deleted = True
        self._record(
            UserDeleted(user_id=self.id, username=self.username, deleted_at=now, reason=reason),
            now,
        )

    def _record(self, event: Event, now: datetime) -> None:
        self.version += 1
        self.updated_at = now
        self.events.append((self.version, event))
