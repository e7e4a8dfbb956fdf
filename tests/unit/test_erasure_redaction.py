"""The redacted form of a deleted user's events: no PII, still valid events of the contract."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email

from events import (
    Envelope,
    PasswordChanged,
    UserDeleted,
    UserEmailVerified,
    UserRegistered,
    UserUpdated,
    event_from_envelope,
    json_schemas,
    to_envelope,
)
from events.erasure import (
    erased_email,
    erased_username,
    is_erased_email,
    redact_data,
    redact_envelope,
)
from infra.kafka.broker import KafkaBroker

NOW = datetime(2026, 1, 1, tzinfo=UTC)
USER = uuid.UUID("6f1c2d3e-4b5a-4c6d-8e7f-0123456789ab")


def envelope_json(event: Any, sequence: int) -> dict[str, Any]:
    """An event's envelope as the outbox stores it (JSON data)."""
    return to_envelope(event, sequence=sequence, source="/test").model_dump(mode="json")


def history() -> list[dict[str, Any]]:
    """A user's life: registered with a display name, renamed, re-addressed, changed, deleted."""
    return [
        envelope_json(
            UserRegistered(
                user_id=USER, username="alice", email="alice@example.com", role="user",
                registered_at=NOW, display_name="Alice A.",
            ),
            1,
        ),
        envelope_json(UserUpdated(user_id=USER, updated_at=NOW, display_name="Alice B."), 2),
        envelope_json(UserUpdated(user_id=USER, updated_at=NOW, email="a@example.org"), 3),
        envelope_json(PasswordChanged(user_id=USER, changed_at=NOW, reason="change"), 4),
        envelope_json(
            UserEmailVerified(user_id=USER, email="a@example.org", verified_at=NOW), 5
        ),
        envelope_json(UserDeleted(user_id=USER, username="alice", deleted_at=NOW), 6),
    ]  # fmt: skip


def test_no_pii_is_left_and_everything_else_is_kept() -> None:
    original = history()
    redacted = [redact_envelope(envelope) for envelope in original]

    text = str(redacted).lower()
    for trace in ("alice", "example.com", "example.org"):
        assert trace not in text
    for before, after in zip(original, redacted, strict=True):
        assert {k: v for k, v in after.items() if k != "data"} == {
            k: v for k, v in before.items() if k != "data"
        }
        assert set(after["data"]) == set(before["data"])  # a sparse update stays sparse
    assert redacted[0]["data"] | {"registered_at": None} == {
        "user_id": str(USER),
        "username": f"erased-{USER.hex}",
        "email": f"erased-{USER.hex}@erased.invalid",
        "role": "user",
        "registered_at": None,
        "display_name": None,
        "status": "active",
        "email_verified": False,
    }
    assert redacted[1]["data"]["display_name"] is None
    assert redacted[2]["data"]["email"] == erased_email(USER)
    assert redacted[3] == original[3]  # a password change names nobody
    assert redacted[5]["data"]["username"] == erased_username(USER)
    assert redacted[4]["data"]["email"] == erased_email(USER)
    assert redacted[5]["data"]["reason"] == "requested"


def test_redacting_twice_changes_nothing() -> None:
    once = [redact_envelope(envelope) for envelope in history()]
    assert [redact_envelope(envelope) for envelope in once] == once


def test_redacted_events_are_valid_events_of_the_contract() -> None:
    for envelope in history():
        redacted = redact_envelope(envelope)
        event = event_from_envelope(Envelope.model_validate(redacted))
        assert event.user_id == USER


def test_the_erased_address_fits_the_contract_but_no_account_and_no_mailbox() -> None:
    address = erased_email(USER)
    assert is_erased_email(address)
    assert not is_erased_email("alice@example.com")
    # The auth service checks addresses with email-validator: `.invalid` is reserved, so no
    # account can be registered with an erased address and no mail to it can be delivered.
    with pytest.raises(EmailNotValidError):
        validate_email(address, check_deliverability=False)
    # Longer than any username the auth service accepts (3-32 characters).
    assert len(erased_username(USER)) > 32


def test_a_null_email_stays_null_and_unknown_fields_stay() -> None:
    data = {"user_id": str(USER), "email": None, "nickname": "kept"}
    assert redact_data(data, USER) == data


def test_the_contract_is_unchanged_by_erasure() -> None:
    # No new attribute or field: an older consumer reads redacted events as it reads others.
    assert "erased" not in str(json_schemas()["Envelope"]["properties"])


def test_kafka_cannot_erase_and_says_so() -> None:
    erased = asyncio.run(KafkaBroker(["127.0.0.1:1"]).erase("t", {USER: ["{}"]}, since=NOW))
    assert erased.rewritable is False
    assert (erased.removed, erased.appended) == (0, 0)
