"""The User aggregate: each change bumps the version and records its event with that sequence."""

from datetime import UTC, datetime, timedelta

import pytest

from auth.domain.model import Principal, Role, User
from events import (
    PasswordChanged,
    PasswordResetRequested,
    UserDeleted,
    UserRegistered,
    UserRoleChanged,
    UserStatusChanged,
    UserUpdated,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_user() -> User:
    return User.register(
        username="alice", email="alice@example.com", password_hash="fake$secret-1", now=T0
    )


def test_registration_records_user_registered_as_sequence_1() -> None:
    user = new_user()

    assert user.version == 1
    assert user.status == "active"
    assert user.role == "user"
    assert user.created_at == user.updated_at == T0
    assert user.events == [
        (
            1,
            UserRegistered(
                user_id=user.id,
                username="alice",
                email="alice@example.com",
                role="user",
                registered_at=T0,
            ),
        )
    ]


def test_registering_an_admin_records_the_role() -> None:
    user = User.register(
        username="root", email="root@example.com", password_hash="h", now=T0, role="admin"
    )

    assert user.role == "admin"
    assert user.events[0][1] == UserRegistered(
        user_id=user.id, username="root", email="root@example.com", role="admin", registered_at=T0
    )


def test_two_registrations_get_different_ids() -> None:
    assert new_user().id != new_user().id


def test_changing_the_password_bumps_the_version_and_records_the_change() -> None:
    user = new_user()
    later = T0 + timedelta(minutes=5)

    user.change_password("fake$secret-2", reason="reset", now=later)

    assert user.password_hash == "fake$secret-2"
    assert user.version == 2
    assert user.updated_at == later
    assert user.events[-1] == (
        2,
        PasswordChanged(user_id=user.id, changed_at=later, reason="reset"),
    )


def test_deleting_marks_the_user_deleted_and_records_user_deleted() -> None:
    user = new_user()
    assert user.deleted is False
    later = T0 + timedelta(days=1)

    user.delete(now=later, reason="admin")

    assert user.deleted is True
    assert user.version == 2
    assert user.events[-1] == (
        2,
        UserDeleted(user_id=user.id, username="alice", deleted_at=later, reason="admin"),
    )


def test_deletion_reason_defaults_to_requested() -> None:
    user = new_user()

    user.delete(now=T0)

    assert user.events[-1][1] == UserDeleted(
        user_id=user.id, username="alice", deleted_at=T0, reason="requested"
    )


def test_changes_are_recorded_in_order_with_consecutive_sequences() -> None:
    user = new_user()

    user.change_password("fake$two", reason="change", now=T0)
    user.change_password("fake$three", reason="admin", now=T0)
    user.delete(now=T0)

    assert user.version == 4
    assert [(sequence, type(event)) for sequence, event in user.events] == [
        (1, UserRegistered),
        (2, PasswordChanged),
        (3, PasswordChanged),
        (4, UserDeleted),
    ]


def test_a_loaded_user_continues_its_sequence_from_its_version() -> None:
    user = User(
        id=new_user().id,
        username="alice",
        email="alice@example.com",
        password_hash="fake$old",
        role="user",
        status="active",
        created_at=T0,
        updated_at=T0,
        version=7,
    )

    user.change_password("fake$new", reason="change", now=T0)

    assert user.events == [(8, PasswordChanged(user_id=user.id, changed_at=T0, reason="change"))]


def test_recorded_events_never_contain_the_password_hash() -> None:
    user = new_user()
    user.change_password("fake$secret-2", reason="change", now=T0)
    user.delete(now=T0)

    dumped = [event.model_dump_json() for _, event in user.events]

    assert not [text for text in dumped if "secret" in text]


def test_a_profile_update_records_only_the_fields_that_differ() -> None:
    user = new_user()
    later = T0 + timedelta(hours=1)

    user.update_profile({"email": "alice@example.com", "display_name": "Alice"}, now=later)

    assert user.display_name == "Alice"
    assert (user.version, user.updated_at) == (2, later)
    sequence, event = user.events[-1]
    assert sequence == 2
    assert event == UserUpdated(user_id=user.id, updated_at=later, display_name="Alice")
    assert event.model_fields_set == {"user_id", "updated_at", "display_name"}


def test_a_profile_update_can_change_several_fields_in_one_event() -> None:
    user = new_user()

    user.update_profile({"email": "a2@example.com", "display_name": "A"}, now=T0)

    assert user.email == "a2@example.com"
    (_, event) = user.events[-1]
    assert isinstance(event, UserUpdated)
    assert event.model_fields_set == {
        "user_id", "updated_at", "email", "display_name", "email_verified"
    }  # fmt: skip
    assert event.email_verified is False  # the new address is not proven yet


def test_clearing_the_display_name_records_it_as_null() -> None:
    user = new_user()
    user.update_profile({"display_name": "Alice"}, now=T0)

    user.update_profile({"display_name": None}, now=T0)

    assert user.display_name is None
    (_, event) = user.events[-1]
    assert isinstance(event, UserUpdated)
    assert "display_name" in event.model_fields_set
    assert event.display_name is None


def test_a_profile_update_that_changes_nothing_records_nothing() -> None:
    user = new_user()

    user.update_profile({"email": "alice@example.com", "display_name": None}, now=T0)
    user.update_profile({}, now=T0)

    assert user.version == 1
    assert len(user.events) == 1


def test_a_role_change_records_the_old_and_the_new_role() -> None:
    user = new_user()

    user.change_role("admin", now=T0)
    user.change_role("admin", now=T0)

    assert user.role == "admin"
    assert user.version == 2
    assert user.events[-1] == (
        2,
        UserRoleChanged(user_id=user.id, old_role="user", new_role="admin", changed_at=T0),
    )


def test_a_status_change_records_the_old_and_the_new_status() -> None:
    user = new_user()

    user.change_status("disabled", now=T0)
    user.change_status("disabled", now=T0)
    user.change_status("active", now=T0)

    assert user.status == "active"
    assert [(sequence, type(event)) for sequence, event in user.events[1:]] == [
        (2, UserStatusChanged),
        (3, UserStatusChanged),
    ]
    assert user.events[1][1] == UserStatusChanged(
        user_id=user.id, old_status="active", new_status="disabled", changed_at=T0
    )


def test_a_password_reset_request_is_recorded_and_changes_nothing_else() -> None:
    user = new_user()
    later = T0 + timedelta(minutes=1)

    user.request_password_reset(now=later)

    assert user.password_hash == "fake$secret-1"
    assert user.events[-1] == (2, PasswordResetRequested(user_id=user.id, requested_at=later))


@pytest.mark.parametrize(("role", "is_admin"), [("admin", True), ("user", False)])
def test_only_an_admin_principal_is_admin(role: Role, is_admin: bool) -> None:
    principal = Principal(user_id=new_user().id, username="alice", role=role)

    assert principal.is_admin is is_admin
    assert principal.session_id is None
