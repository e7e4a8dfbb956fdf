"""The profile service's answers to a pending registration (the registration saga)."""

from datetime import datetime

from events.base import Event


class ProfileCreated(Event):
    """The profile service made the profile of a pending user: auth may activate the account."""

    created_at: datetime


class ProfileRejected(Event):
    """The profile service refused the profile of a pending user: auth deletes the account.

    `reason` is a plain string (for example `display_name_reserved`) so that a newer profile
    service may add reasons without breaking an older auth service.
    """

    reason: str
    rejected_at: datetime
