"""What a new password must be: long enough, within bcrypt's limit, personal, not common."""

from functools import cache
from pathlib import Path

from auth.domain.errors import WeakPasswordError
from auth.domain.model import User

MIN_PASSWORD_CHARS = 8
# bcrypt ignores everything past 72 bytes; refusing longer passwords beats truncating silently.
MAX_PASSWORD_BYTES = 72
# Shorter names and local parts ("al", "x@...") would refuse too many good passwords by accident.
MIN_IDENTITY_CHARS = 3

COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords, lowercase, read once per process."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def password_problem(
    password: str, *, username: str | None = None, email: str | None = None
) -> str | None:
    """Why a new password is not acceptable, or None."""
    # Every reason goes into a 422 body, so none of them may quote the password.
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"the password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8"
    folded = password.casefold()
    if _contains(folded, username):
        return "the password must not contain the username"
    if email is not None and _contains(folded, email.rpartition("@")[0]):
        return "the password must not contain the part of the email address before the @"
    if folded in common_passwords():
        return "the password is too common"
    return None


def check_new_password(password: str, user: User | None = None, *, field: str = "password",
                       username: str | None = None, email: str | None = None) -> None:  # fmt: skip
    """Raise WeakPasswordError when the password breaks the policy for this account."""
    problem = password_problem(
        password,
        username=user.username if user else username,
        email=user.email if user else email,
    )
    if problem is not None:
        raise WeakPasswordError(problem, field=field)


def _contains(folded_password: str, identity: str | None) -> bool:
    """Whether the password holds the identity, ignoring case, when it is long enough to matter."""
    if identity is None or len(identity) < MIN_IDENTITY_CHARS:
        return False
    return identity.casefold() in folded_password
