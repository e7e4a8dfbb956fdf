"""The texts of the notifier's mails: change them here, the rest stays as it is."""

from datetime import UTC, datetime
from typing import Literal

WELCOME = "welcome"
PASSWORD_CHANGED = "password_changed"

_PASSWORD_SUBJECTS = {
    "change": "Your password was changed",
    "reset": "Your password was reset",
    "admin": "An administrator changed your password",
}


def welcome(username: str) -> tuple[str, str]:
    """Subject and body of the mail to a newly registered user."""
    return (
        f"Welcome, {username}",
        f"Hello {username},\n\n"
        "your account is ready: you can log in with your username or this address.\n\n"
        "If you did not register, you can ignore this mail.\n",
    )


def password_changed(
    username: str, reason: Literal["change", "reset", "admin"], changed_at: datetime
) -> tuple[str, str]:
    """Subject and body of the notice that the user's password changed."""
    when = changed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        _PASSWORD_SUBJECTS[reason],
        f"Hello {username},\n\n"
        f"the password of your account was {'reset' if reason == 'reset' else 'changed'}"
        f" on {when}.\n\n"
        "If this was not you, reset your password now and tell your administrator.\n",
    )
