"""The fast path's checks of raw data never accept what the contract's models would not read."""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from consumers.replay.checks import check_data, timestamp
from consumers.replay.raw import NotBulkableError, parse_raw
from events import EVENT_TYPES, Event, to_envelope

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
FIELDS: dict[str, dict[str, Any]] = {
    "UserRegistered": {"username": "ann", "email": "ann@example.com", "role": "user",
                       "registered_at": NOW, "display_name": "Ann", "status": "active"},
    "PasswordChanged": {"changed_at": NOW, "reason": "reset"},
    "UserDeleted": {"username": "ann", "deleted_at": NOW, "reason": "requested"},
    "UserUpdated": {"updated_at": NOW, "email": "a@b.example", "display_name": None},
    "UserRoleChanged": {"old_role": "user", "new_role": "admin", "changed_at": NOW},
    "UserStatusChanged": {"old_status": "active", "new_status": "disabled", "changed_at": NOW},
    "PasswordResetRequested": {"requested_at": NOW},
    "ProfileCreated": {"created_at": NOW},
    "ProfileRejected": {"reason": "display_name_blank", "rejected_at": NOW},
}  # fmt: skip
# Values to put in each field in turn: the models take some, refuse others.
ODD_VALUES: list[Any] = [
    None, 5, 5.0, True, "", " ", "x", "user", "admin", "pending", "a@b", "a@b\n", "a b@c",
    "@b", "a@", "x" * 330 + "@b.c", "2026-03-01T12:30:15Z", "2026-03-01T12:30:15",
    "2026-03-01 12:30:15+00:00", "2026-03-01T12:30:15.1234567Z", "2026-03-01T25:00:00Z",
    "2026-02-30T12:00:00Z", "2026-03-01T23:59:60Z", "2026-03-01", 1_700_000_000, [], {},
    "00000000-0000-0000-0000-00000000000A",
]  # fmt: skip


def valid_data(kind: str) -> dict[str, Any]:
    """Data of type `kind` as our producers write it (JSON mode)."""
    event: Event = EVENT_TYPES[kind](user_id=uuid4(), **FIELDS[kind])
    return event.model_dump(mode="json", exclude_unset=event.sparse)


def models_read(kind: str, data: dict[str, Any]) -> bool:
    """Whether the model validates the data."""
    try:
        EVENT_TYPES[kind].model_validate(data)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_what_our_producers_write_takes_the_fast_path(kind: str) -> None:
    check_data(EVENT_TYPES[kind], valid_data(kind))


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_no_odd_value_passes_the_checks_that_the_model_refuses(kind: str) -> None:
    cases = 0
    for field in [*FIELDS[kind], "user_id"]:
        for value in [*ODD_VALUES, "<absent>"]:
            data = valid_data(kind)
            if value == "<absent>":
                data.pop(field, None)
            else:
                data[field] = value
            try:
                check_data(EVENT_TYPES[kind], data)
            except NotBulkableError:
                continue
            cases += 1
            assert models_read(kind, data), (field, value)
    assert cases > 0


def test_times_are_parsed_as_the_models_parse_them() -> None:
    for text in [
        "2026-03-01T12:30:15Z",
        "2026-03-01T12:30:15.5+02:00",
        "2026-03-01T12:30:15.123456-05:30",
    ]:
        event = EVENT_TYPES["PasswordResetRequested"].model_validate(
            {"user_id": str(uuid4()), "requested_at": text}
        )
        assert timestamp(text) == event.requested_at  # type: ignore[attr-defined]


def test_an_envelope_is_read_raw_only_in_the_canonical_form_the_models_would_accept() -> None:
    event = EVENT_TYPES["ProfileCreated"](user_id=uuid4(), created_at=NOW)
    good = json.loads(to_envelope(event, sequence=3, source="/s").model_dump_json())
    assert parse_raw(json.dumps(good)).sequence == 3
    for change in [
        {"subject": good["subject"].upper()},
        {"id": "not-a-uuid"},
        {"sequence": 0},
        {"sequence": "3"},
        {"sequence": 3.0},
        {"time": "2026-03-01T12:30:15"},
        {"time": "2026-03-01T25:30:15Z"},
        {"specversion": "0.3"},
        {"datacontenttype": "text/plain"},
        {"source": ""},
        {"data": [1]},
        {"data": {**good["data"], "user_id": str(uuid4())}},
    ]:
        with pytest.raises(NotBulkableError):
            parse_raw(json.dumps(good | change))
    with pytest.raises(NotBulkableError):
        parse_raw("[1, 2]")
