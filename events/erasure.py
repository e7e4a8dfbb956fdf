"""What an erased event looks like: a deleted user's PII replaced by values that say so.

After a user is deleted and a grace period has passed, the auth service redacts every event
of that user in its event log (`auth.outbox`), and the audit example redacts its copies on
UserDeleted. Ids, types, sequences and times stay; in `data`:
- `username` becomes `erased-<the user id, 32 hex digits>`: unique per user (a view with a
  unique username index still takes it) and longer than any username the auth service
  accepts (3-32 characters), so it can never be a live account's;
- `email` becomes `erased-<hex>@erased.invalid`: it fits the contract's address shape, and
  `.invalid` is reserved (RFC 2606, RFC 6761): no mail to it can be delivered, and the auth
  service's full address check (email-validator) refuses it, so no account can take it;
- `display_name`, where present, becomes null (a sparse UserUpdated keeps its shape: a field
  absent before stays absent).

A redacted event is still a valid event of the contract: consumers and replays apply it as
any other, and tell an erased address from a real one with `is_erased_email`.
"""

from typing import Any
from uuid import UUID

ERASED_PREFIX = "erased-"
ERASED_DOMAIN = "erased.invalid"
# The data fields that name a person; every other field is kept as it is.
PII_FIELDS = ("username", "email", "display_name")


def erased_username(user_id: UUID) -> str:
    """The username a deleted user's events carry after erasure."""
    return f"{ERASED_PREFIX}{user_id.hex}"


def erased_email(user_id: UUID) -> str:
    """The address a deleted user's events carry after erasure (undeliverable by design)."""
    return f"{erased_username(user_id)}@{ERASED_DOMAIN}"


def is_erased_email(address: str) -> bool:
    """Whether `address` is an erased user's placeholder, not a mailbox."""
    return address.lower().endswith("@" + ERASED_DOMAIN)


def redact_data(data: dict[str, Any], user_id: UUID) -> dict[str, Any]:
    """`data` with the user's PII replaced (a new dict); redacting twice changes nothing.

    Only string values are replaced: a null email (none in today's contract) stays null.
    """
    redacted = dict(data)
    if isinstance(redacted.get("username"), str):
        redacted["username"] = erased_username(user_id)
    if isinstance(redacted.get("email"), str):
        redacted["email"] = erased_email(user_id)
    if "display_name" in redacted:
        redacted["display_name"] = None
    return redacted


def redact_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    """An envelope (as JSON data) with its `data` redacted for its subject; the rest kept."""
    user_id = UUID(str(envelope["subject"]))
    return {**envelope, "data": redact_data(dict(envelope.get("data") or {}), user_id)}
