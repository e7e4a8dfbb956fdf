"""The event contract: CloudEvents envelopes, reading them back, and what events never carry."""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import (
    EVENT_TYPES,
    Envelope,
    MalformedEventError,
    MfaDisabled,
    MfaEnabled,
    PasswordChanged,
    PasswordResetRequested,
    ProfileCreated,
    ProfileRejected,
    UnknownEventTypeError,
    UserDeleted,
    UserEmailVerified,
    UserRegistered,
    UserRoleChanged,
    UserStatusChanged,
    UserUpdated,
    envelope_from_json,
    event_from_envelope,
    json_schemas,
    to_envelope,
)

SOURCE = "/userbus/auth"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def registered(user_id: UUID | None = None) -> UserRegistered:
    return UserRegistered(
        user_id=user_id or uuid4(),
        username="alice",
        email="alice@example.com",
        role="user",
        registered_at=NOW,
    )


def envelope_json(**changes: Any) -> str:
    """A valid UserRegistered envelope as JSON, with some attributes replaced."""
    document = to_envelope(registered(), sequence=1, source=SOURCE).model_dump(mode="json")
    document.update(changes)
    return json.dumps(document)


def test_envelope_carries_the_cloudevents_attributes() -> None:
    event = registered()
    event_id = uuid4()

    envelope = to_envelope(event, sequence=3, source=SOURCE, event_id=event_id, time=NOW)

    assert envelope.specversion == "1.0"
    assert envelope.id == event_id
    assert envelope.source == SOURCE
    assert envelope.type == "UserRegistered"
    assert envelope.subject == str(event.user_id)
    assert envelope.user_id == event.user_id
    assert envelope.time == NOW
    assert envelope.sequence == 3
    assert envelope.datacontenttype == "application/json"
    assert envelope.data["username"] == "alice"


@pytest.mark.parametrize(
    "event",
    [
        registered(),
        PasswordChanged(user_id=uuid4(), changed_at=NOW, reason="reset"),
        UserDeleted(user_id=uuid4(), username="bob", deleted_at=NOW, reason="admin"),
        UserUpdated(user_id=uuid4(), updated_at=NOW, email="b@example.com", display_name="B"),
        UserRoleChanged(user_id=uuid4(), old_role="user", new_role="admin", changed_at=NOW),
        UserStatusChanged(
            user_id=uuid4(), old_status="active", new_status="disabled", changed_at=NOW
        ),
        PasswordResetRequested(user_id=uuid4(), requested_at=NOW),
        MfaEnabled(user_id=uuid4(), method="totp", enabled_at=NOW),
        MfaDisabled(user_id=uuid4(), method="totp", disabled_at=NOW, reason="admin"),
    ],
    ids=lambda event: event.type_name(),
)
def test_every_event_survives_a_round_trip_through_json(event: Any) -> None:
    envelope = to_envelope(event, sequence=2, source=SOURCE)

    read = envelope_from_json(envelope.model_dump_json().encode())

    assert read == envelope
    assert event_from_envelope(read) == event


def test_envelope_without_event_id_or_time_gets_fresh_ones() -> None:
    first = to_envelope(registered(), sequence=1, source=SOURCE)
    second = to_envelope(registered(), sequence=1, source=SOURCE)

    assert first.id != second.id
    assert first.time.tzinfo is not None


def test_unknown_event_type_is_reported_as_unknown() -> None:
    envelope = envelope_from_json(envelope_json(type="UserRenamed"))

    with pytest.raises(UnknownEventTypeError) as caught:
        event_from_envelope(envelope)

    assert caught.value.type_name == "UserRenamed"


MISSING = object()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", MISSING),
        ("email", "not an email"),
        ("role", "superuser"),
        ("registered_at", "yesterday"),
        ("user_id", "42"),
    ],
)
def test_data_that_does_not_fit_the_type_is_malformed(field: str, value: object) -> None:
    good = to_envelope(registered(), sequence=1, source=SOURCE)
    data = {name: item for name, item in good.data.items() if name != field}
    if value is not MISSING:
        data[field] = value
    envelope = good.model_copy(update={"data": data})

    with pytest.raises(MalformedEventError, match=field):
        event_from_envelope(envelope)


def test_data_about_another_user_than_the_subject_is_malformed() -> None:
    envelope = envelope_from_json(envelope_json(subject=str(uuid4())))

    with pytest.raises(MalformedEventError, match="subject"):
        event_from_envelope(envelope)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[]",
        b'"a string"',
        envelope_json(sequence=0),
        envelope_json(specversion="0.3"),
        envelope_json(id="not-a-uuid"),
        envelope_json(type=""),
        envelope_json(data="a string"),
    ],
    ids=[
        "invalid-json",
        "empty",
        "array",
        "not-an-object",
        "sequence-0",
        "old-specversion",
        "bad-id",
        "empty-type",
        "data-not-object",
    ],
)
def test_bytes_that_are_not_an_envelope_are_malformed(raw: bytes | str) -> None:
    with pytest.raises(MalformedEventError):
        envelope_from_json(raw)


def test_an_envelope_whose_subject_is_not_a_user_id_is_malformed() -> None:
    with pytest.raises(MalformedEventError, match="subject"):
        envelope_from_json(envelope_json(subject="not-a-uuid"))


def test_envelope_missing_an_attribute_is_malformed() -> None:
    document = json.loads(envelope_json())
    del document["source"]

    with pytest.raises(MalformedEventError, match="source"):
        envelope_from_json(json.dumps(document))


def test_unknown_envelope_attributes_from_a_newer_producer_are_tolerated() -> None:
    raw = envelope_json(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")

    envelope = envelope_from_json(raw)

    assert isinstance(event_from_envelope(envelope), UserRegistered)


def test_no_event_has_a_field_that_could_hold_a_secret() -> None:
    # "code" and "otp": a TOTP or recovery code is a secret too (MfaEnabled carries none).
    forbidden = ("password", "hash", "token", "secret", "code", "otp")

    fields = [
        (type_name, field) for type_name, cls in EVENT_TYPES.items() for field in cls.model_fields
    ]

    assert fields, "the registry knows no event type"
    assert [
        (type_name, field)
        for type_name, field in fields
        if any(word in field.lower() for word in forbidden)
    ] == []


def test_registry_names_each_event_by_its_class() -> None:
    assert {
        "UserRegistered": UserRegistered,
        "PasswordChanged": PasswordChanged,
        "UserDeleted": UserDeleted,
        "UserUpdated": UserUpdated,
        "UserRoleChanged": UserRoleChanged,
        "UserStatusChanged": UserStatusChanged,
        "PasswordResetRequested": PasswordResetRequested,
        "UserEmailVerified": UserEmailVerified,
        "ProfileCreated": ProfileCreated,
        "ProfileRejected": ProfileRejected,
        "MfaEnabled": MfaEnabled,
        "MfaDisabled": MfaDisabled,
    } == EVENT_TYPES


def test_the_profile_services_answers_travel_in_the_same_envelope() -> None:
    user_id = uuid4()
    answers = [
        ProfileCreated(user_id=user_id, created_at=NOW),
        ProfileRejected(user_id=user_id, reason="display_name_reserved", rejected_at=NOW),
    ]
    for answer in answers:
        raw = to_envelope(answer, sequence=1, source="/userbus/profiles").model_dump_json()
        assert event_from_envelope(envelope_from_json(raw)) == answer


def test_a_registration_says_whether_it_waits_for_a_profile() -> None:
    pending = registered().model_copy(update={"status": "pending"})
    data = to_envelope(pending, sequence=1, source=SOURCE).data

    assert data["status"] == "pending"
    # An event from before the field existed was an active account.
    del data["status"]
    assert UserRegistered.model_validate(data).status == "active"


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"display_name": "Bob"}, {"display_name"}),
        ({"display_name": None}, {"display_name"}),
        ({"email": "b@example.com"}, {"email"}),
    ],
    ids=["set-display-name", "clear-display-name", "email"],
)
def test_user_updated_carries_only_the_fields_that_changed_through_the_wire(
    changes: dict[str, Any], fields: set[str]
) -> None:
    event = UserUpdated(user_id=uuid4(), updated_at=NOW, **changes)

    envelope = envelope_from_json(to_envelope(event, sequence=2, source=SOURCE).model_dump_json())
    read = event_from_envelope(envelope)

    assert set(envelope.data) == {"user_id", "updated_at", *fields}
    assert read == event
    assert read.model_fields_set == {"user_id", "updated_at", *fields}


def test_json_schemas_describe_the_envelope_and_every_event_type() -> None:
    schemas = json_schemas()

    assert set(schemas) == {"Envelope", *EVENT_TYPES}
    assert "sequence" in schemas["Envelope"]["properties"]
    for type_name, cls in EVENT_TYPES.items():
        assert set(schemas[type_name]["properties"]) == set(cls.model_fields)


def test_envelope_is_immutable() -> None:
    envelope = to_envelope(registered(), sequence=1, source=SOURCE)

    with pytest.raises(ValueError, match="frozen"):
        envelope.sequence = 2  # type: ignore[misc]

    assert isinstance(envelope, Envelope)
