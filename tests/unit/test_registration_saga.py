"""The registration saga on in-memory fakes: pending accounts, activation, compensation, expiry."""

from dataclasses import replace
from datetime import timedelta

import pytest

from auth.domain.errors import InvalidCredentialsError, RegistrationPendingError
from auth.domain.model import User
from auth.service_layer.authentication import authenticate, check_credentials
from auth.service_layer.context import AuthContext
from auth.service_layer.registrations import (
    complete_registration,
    expire_registrations,
    fail_registration,
    register_user,
)
from downstream_examples.profiles.answers import refusal
from events import UserDeleted, UserRegistered, UserStatusChanged
from tests.unit.fakes import (
    FAKE_HASH_PREFIX,
    CapturedAudit,
    FakeLoginRateLimiter,
    FakeUnitOfWorkFactory,
)
from tests.unit.helpers import NOW, PASSWORD

WRONG = "not the password"


def pending_user(username: str = "alice") -> User:
    return User.register(
        username=username,
        email=f"{username}@example.com",
        password_hash=FAKE_HASH_PREFIX + PASSWORD,
        now=NOW,
        pending=True,
    )


async def store(uow_factory: FakeUnitOfWorkFactory, user: User) -> User:
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


# --- the domain ------------------------------------------------------------------------------


def test_a_pending_registration_says_so_in_its_event() -> None:
    user = pending_user()

    assert user.status == "pending"
    [(sequence, event)] = user.events
    assert sequence == 1
    assert isinstance(event, UserRegistered)
    assert event.status == "pending"


def test_completing_a_pending_registration_activates_the_account() -> None:
    user = pending_user()
    user.events.clear()

    assert user.complete_registration(now=NOW)

    assert user.status == "active"
    [(sequence, event)] = user.events
    assert sequence == 2
    assert isinstance(event, UserStatusChanged)
    assert (event.old_status, event.new_status) == ("pending", "active")


def test_failing_a_pending_registration_deletes_the_account_with_the_reason() -> None:
    user = pending_user()
    user.events.clear()

    assert user.fail_registration(now=NOW, reason="registration_failed")

    assert user.deleted
    [(sequence, event)] = user.events
    assert sequence == 2
    assert isinstance(event, UserDeleted)
    assert event.reason == "registration_failed"


@pytest.mark.parametrize("status", ["active", "disabled"])
def test_a_settled_account_ignores_the_saga(status: str) -> None:
    user = pending_user()
    user.change_status("active" if status == "active" else "disabled", now=NOW)
    user.events.clear()

    assert not user.complete_registration(now=NOW)
    assert not user.fail_registration(now=NOW, reason="registration_failed")

    assert user.status == status
    assert not user.deleted
    assert user.events == []


# --- registration and login ------------------------------------------------------------------


async def test_registration_with_the_saga_creates_a_pending_account(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    saga_on = replace(ctx, require_profile=True)

    user = await register_user(
        saga_on, username="alice", email="alice@example.com", password=PASSWORD
    )

    assert uow_factory.rows[user.id].status == "pending"
    [(_, event)] = uow_factory.outbox
    assert isinstance(event, UserRegistered)
    assert event.status == "pending"


async def test_a_pending_user_with_the_right_password_is_told_to_wait(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await store(uow_factory, pending_user())

    with pytest.raises(RegistrationPendingError):
        await authenticate(ctx, login="alice", password=PASSWORD)
    # Someone without the password learns nothing about the account.
    with pytest.raises(InvalidCredentialsError):
        await authenticate(ctx, login="alice", password=WRONG)


async def test_a_pending_login_is_audited_and_does_not_count_against_the_limits(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    limiter: FakeLoginRateLimiter,
    audit: CapturedAudit,
) -> None:
    await store(uow_factory, pending_user())

    for _ in range(10):
        with pytest.raises(RegistrationPendingError):
            await check_credentials(ctx, login="alice", password=PASSWORD, address=None)

    assert audit.lines("login_failed")[0]["reason"] == "registration_pending"
    assert await limiter.retry_after("alice", None) is None


# --- the answers and the expiry --------------------------------------------------------------


async def test_profile_created_activates_once(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    user = await store(uow_factory, pending_user())

    assert await complete_registration(ctx, user_id=user.id)
    assert not await complete_registration(ctx, user_id=user.id)

    assert uow_factory.rows[user.id].status == "active"
    assert [type(e) for _, e in uow_factory.outbox] == [UserRegistered, UserStatusChanged]
    assert audit.events() == ["registration_completed"]


async def test_profile_rejected_deletes_the_pending_account(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    user = await store(uow_factory, pending_user())

    assert await fail_registration(ctx, user_id=user.id, why="display_name_reserved")
    assert not await complete_registration(ctx, user_id=user.id)

    assert user.id not in uow_factory.rows
    [_, (sequence, deleted)] = uow_factory.outbox
    assert isinstance(deleted, UserDeleted)
    assert (sequence, deleted.reason) == (2, "registration_failed")


async def test_expiry_deletes_only_accounts_pending_too_long(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    old = await store(uow_factory, pending_user("old"))
    settled = await store(uow_factory, pending_user("settled"))
    await complete_registration(ctx, user_id=settled.id)
    fresh = pending_user("fresh")
    fresh.created_at = fresh.updated_at = NOW + timedelta(days=365_000)
    await store(uow_factory, fresh)

    expired = await expire_registrations(ctx, timeout=timedelta(minutes=5), limit=10)

    assert expired == 1
    assert old.id not in uow_factory.rows
    assert {settled.id, fresh.id} <= set(uow_factory.rows)
    deleted = [e for _, e in uow_factory.outbox if isinstance(e, UserDeleted)]
    assert [(e.user_id, e.reason) for e in deleted] == [(old.id, "registration_expired")]
    # A late answer for the expired account changes nothing.
    assert not await complete_registration(ctx, user_id=old.id)


# --- the profile service's rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("display_name", "reason"),
    [
        (None, None),
        ("Alice", None),
        ("Admin", "display_name_reserved"),
        ("  s u p p o r t ", "display_name_reserved"),
        ("ROOT", "display_name_reserved"),
        ("Administrator of fun", None),
        ("   ", "display_name_blank"),
    ],
)
def test_the_profile_service_refuses_reserved_or_blank_display_names(
    display_name: str | None, reason: str | None
) -> None:
    registration = pending_user().events[0][1]
    assert isinstance(registration, UserRegistered)
    registration = registration.model_copy(update={"display_name": display_name})

    assert refusal(registration) == reason
