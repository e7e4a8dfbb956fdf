"""The User aggregate's email verification: a new address is unproven, a proof names it."""

from auth.domain.model import User
from events import UserEmailVerified, UserUpdated
from tests.unit.helpers import NOW


def new_user() -> User:
    """A fresh account, its registration event left out."""
    user = User.register(username="alice", email="alice@example.com", password_hash="h", now=NOW)
    user.events.clear()
    return user


def test_a_new_account_is_unverified_and_says_so_in_its_event() -> None:
    user = User.register(username="bob", email="bob@example.com", password_hash="h", now=NOW)
    assert user.email_verified is False
    [(_, registered)] = user.events
    assert registered.model_dump()["email_verified"] is False


def test_verifying_the_current_address_records_it_once() -> None:
    user = new_user()
    assert user.verify_email("ALICE@example.com", now=NOW)
    assert (user.email_verified, user.email_verified_at) == (True, NOW)
    assert user.verify_email("alice@example.com", now=NOW)  # again: true, no second event
    [(sequence, event)] = user.events
    assert sequence == 2
    assert event == UserEmailVerified(user_id=user.id, email="alice@example.com", verified_at=NOW)


def test_a_proof_of_another_address_verifies_nothing() -> None:
    user = new_user()
    assert not user.verify_email("old@example.com", now=NOW)
    assert user.email_verified is False
    assert user.events == []


def test_a_new_email_is_unverified_again_and_the_event_says_so() -> None:
    user = new_user()
    user.verify_email("alice@example.com", now=NOW)
    user.update_profile({"email": "alice@example.org"}, now=NOW)
    assert (user.email_verified, user.email_verified_at) == (False, None)
    _, event = user.events[-1]
    assert isinstance(event, UserUpdated)
    assert event.model_fields_set == {"user_id", "updated_at", "email", "email_verified"}
    assert event.email_verified is False


def test_a_display_name_change_leaves_the_flag_and_the_event_without_it() -> None:
    user = new_user()
    user.verify_email("alice@example.com", now=NOW)
    user.update_profile({"display_name": "Alice"}, now=NOW)
    assert user.email_verified is True
    _, event = user.events[-1]
    assert "email_verified" not in event.model_fields_set
