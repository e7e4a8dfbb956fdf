"""The lifecycle events of a user account."""

from datetime import datetime
from typing import Literal

from pydantic import EmailStr

from events.base import Event

Role = Literal["user", "admin"]


class UserRegistered(Event):
    """A new account exists."""

    username: str
    email: EmailStr
    role: Role
    registered_at: datetime


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
