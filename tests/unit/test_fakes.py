"""The fakes keep the promises of the real adapters, so use-case tests on them mean something."""

from datetime import timedelta
from uuid import uuid4

import pytest

from auth.adapters.rate_limit import LoginRateLimiter
from auth.adapters.reset_tokens import ResetTokenRepository
from auth.adapters.sessions import SessionRepository
from auth.domain.errors import ConcurrentUpdateError, EmailTakenError, UsernameTakenError
from auth.domain.model import User
from auth.domain.passwords import PasswordHasher
from auth.service_layer.context import AuthContext, UnitOfWorkFactory
from auth.service_layer.unit_of_work import UnitOfWork
from infra.mail import Mailer, Message
from tests.unit.fakes import (
    CapturedAudit,
    FakeAuthTables,
    FakeLoginRateLimiter,
    FakeMailer,
    FakePasswordHasher,
    FakeResetTokenRepository,
    FakeSessionRepository,
    FakeUnitOfWork,
    FakeUnitOfWorkFactory,
    make_context,
)
from tests.unit.helpers import NOW, add_user

TTL = timedelta(days=30)


def new_user(username: str = "alice") -> User:
    return User.register(
        username=username, email=f"{username}@example.com", password_hash="fake$pw", now=NOW
    )


async def stored(uow_factory: FakeUnitOfWorkFactory, username: str = "alice") -> User:
    user = new_user(username)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


def test_the_fakes_fit_the_ports() -> None:
    # Checked by mypy: each assignment states the protocol the fake stands in for.
    tables = FakeAuthTables()
    hasher: PasswordHasher = FakePasswordHasher()
    uow_factory: UnitOfWorkFactory = FakeUnitOfWorkFactory()
    uow: UnitOfWork = FakeUnitOfWork()
    sessions: SessionRepository = FakeSessionRepository(tables)
    resets: ResetTokenRepository = FakeResetTokenRepository(tables)
    limiter: LoginRateLimiter = FakeLoginRateLimiter()
    mailer: Mailer = FakeMailer()

    assert all(
        part is not None for part in (hasher, uow_factory, uow, sessions, resets, limiter, mailer)
    )


async def test_changes_left_without_commit_are_dropped_and_publish_nothing() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.change_password("fake$new", reason="change", now=NOW)
        await uow.users.add(new_user("bob"))
        await uow.sessions.create(user.id, now=NOW, ttl=TTL)
        await uow.password_resets.create(user.id, now=NOW, ttl=TTL)

    assert not uow_factory.units[-1].committed
    assert uow_factory.rows[user.id].password_hash == "fake$pw"
    assert [user.username for user in uow_factory.rows.values()] == ["alice"]
    assert [sequence for sequence, _ in uow_factory.outbox] == [1]
    assert uow_factory.tables == FakeAuthTables()


async def test_the_second_of_two_concurrent_changes_fails_and_publishes_nothing() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as first, uow_factory() as second:
        mine = await first.users.get(user.id)
        theirs = await second.users.get(user.id)
        assert mine is not None
        assert theirs is not None
        mine.change_password("fake$mine", reason="change", now=NOW)
        theirs.delete(now=NOW)
        await first.commit()
        with pytest.raises(ConcurrentUpdateError):
            await second.commit()

    assert uow_factory.rows[user.id].password_hash == "fake$mine"
    assert [sequence for sequence, _ in uow_factory.outbox] == [1, 2]


async def test_a_username_is_unique_across_units_of_work_in_any_case() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    await stored(uow_factory, "alice")

    async with uow_factory() as uow:
        with pytest.raises(UsernameTakenError):
            await uow.users.add(new_user("Alice"))


async def test_an_email_changed_to_a_taken_one_fails_on_commit() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    await stored(uow_factory, "alice")
    bob = await stored(uow_factory, "bob")

    async with uow_factory() as uow:
        loaded = await uow.users.get(bob.id)
        assert loaded is not None
        loaded.update_profile({"email": "ALICE@example.com"}, now=NOW)
        with pytest.raises(EmailTakenError):
            await uow.commit()

    assert uow_factory.rows[bob.id].email == "bob@example.com"


async def test_a_loaded_user_is_a_copy_until_committed() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as uow:
        loaded = await uow.users.get_by_login("ALICE@example.com")
        assert loaded is not None
        loaded.change_password("fake$new", reason="change", now=NOW)
        assert uow_factory.rows[user.id].version == 1
        await uow.commit()

    assert uow_factory.rows[user.id].version == 2
    assert uow_factory.rows[user.id].events == []


async def test_users_are_found_by_email_in_any_case() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as uow:
        found = await uow.users.get_by_email("Alice@EXAMPLE.com")
        missing = await uow.users.get_by_email("alice")

    assert found is not None
    assert found.id == user.id
    assert missing is None


async def test_pages_are_ordered_by_lowercase_username_and_start_after_the_position() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    for name in ["carol", "Bob", "alice", "Dave"]:
        await stored(uow_factory, name)

    async with uow_factory() as uow:
        first = await uow.users.list_page(after=None, limit=2)
        last = first[-1]
        rest = await uow.users.list_page(after=(last.username.lower(), last.id), limit=10)

    assert [user.username for user in first] == ["alice", "Bob"]
    assert [user.username for user in rest] == ["carol", "Dave"]


async def test_only_active_admins_are_counted() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    await add_user(uow_factory, "root", role="admin")
    await add_user(uow_factory, "old-root", role="admin", status="disabled")
    await add_user(uow_factory, "alice")

    async with uow_factory() as uow:
        assert await uow.users.count_active_admins() == 1


async def test_a_refresh_token_is_spent_by_rotation_and_its_session_slides_on() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user_id = uuid4()
    async with uow_factory() as uow:
        session_id, token = await uow.sessions.create(user_id, now=NOW, ttl=TTL)
        await uow.commit()
    later = NOW + timedelta(days=1)

    async with uow_factory() as uow:
        grant = await uow.sessions.find_refresh(token)
        assert grant is not None
        next_token = await uow.sessions.rotate(grant, now=later, ttl=TTL)
        await uow.commit()

    async with uow_factory() as uow:
        spent = await uow.sessions.find_refresh(token)
        fresh = await uow.sessions.find_refresh(next_token)
        assert await uow.sessions.find_refresh("no such token") is None
    assert spent is not None
    assert fresh is not None
    assert (spent.session_id, spent.user_id, spent.token_used) == (session_id, user_id, True)
    assert (fresh.session_id, fresh.token_used) == (session_id, False)
    assert fresh.session_expires_at == later + TTL
    assert fresh.usable(later)
    # Only digests are stored, never the tokens themselves.
    assert token.encode() not in uow_factory.tables.refresh_tokens


async def test_revoking_all_sessions_can_keep_one_and_counts_the_others() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user_id, other_id = uuid4(), uuid4()
    async with uow_factory() as uow:
        kept, _ = await uow.sessions.create(user_id, now=NOW, ttl=TTL)
        ended, _ = await uow.sessions.create(user_id, now=NOW, ttl=TTL)
        others, _ = await uow.sessions.create(other_id, now=NOW, ttl=TTL)
        await uow.commit()

    async with uow_factory() as uow:
        count = await uow.sessions.revoke_all(user_id, now=NOW, reason="test", keep=kept)
        again = await uow.sessions.revoke_all(user_id, now=NOW, reason="test", keep=kept)
        await uow.commit()

    async with uow_factory() as uow:
        assert (count, again) == (1, 0)
        assert await uow.sessions.is_active(kept, user_id, now=NOW)
        assert not await uow.sessions.is_active(ended, user_id, now=NOW)
        assert await uow.sessions.is_active(others, other_id, now=NOW)
        assert not await uow.sessions.is_active(others, user_id, now=NOW)


async def test_an_aged_session_is_no_longer_active() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user_id = uuid4()
    async with uow_factory() as uow:
        session_id, token = await uow.sessions.create(user_id, now=NOW, ttl=TTL)
        await uow.commit()

    uow_factory.tables.age(TTL)

    async with uow_factory() as uow:
        assert not await uow.sessions.is_active(session_id, user_id, now=NOW)
        grant = await uow.sessions.find_refresh(token)
    assert grant is not None
    assert not grant.usable(NOW)


async def test_a_new_reset_token_spends_the_earlier_ones() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user_id = uuid4()
    async with uow_factory() as uow:
        first = await uow.password_resets.create(user_id, now=NOW, ttl=TTL)
        second = await uow.password_resets.create(user_id, now=NOW, ttl=TTL)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.password_resets.find(first, now=NOW) is None
        assert await uow.password_resets.find(second, now=NOW) == user_id
        assert await uow.password_resets.find(second, now=NOW + TTL) is None
        await uow.password_resets.spend_all(user_id, now=NOW)
        assert await uow.password_resets.find(second, now=NOW) is None


async def test_deleting_a_user_takes_its_sessions_and_reset_tokens_along() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)
    async with uow_factory() as uow:
        await uow.sessions.create(user.id, now=NOW, ttl=TTL)
        await uow.password_resets.create(user.id, now=NOW, ttl=TTL)
        await uow.commit()

    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.delete(now=NOW)
        await uow.commit()

    assert uow_factory.tables == FakeAuthTables()


async def test_the_limiter_counts_per_casefolded_username_and_per_address() -> None:
    limiter = FakeLoginRateLimiter(per_username=2, per_address=3, wait_seconds=60)

    assert await limiter.record_failure("Alice", "10.0.0.1") is None
    assert await limiter.record_failure("ALICE", "10.0.0.2") == 60
    assert await limiter.retry_after("alice", None) == 60
    assert await limiter.retry_after("bob", "10.0.0.1") is None
    assert await limiter.record_failure("bob", "10.0.0.1") is None
    assert await limiter.record_failure("carol", "10.0.0.1") == 60
    assert await limiter.retry_after("dave", "10.0.0.1") == 60

    await limiter.record_success("aLiCe")

    assert await limiter.retry_after("alice", None) is None
    assert await limiter.retry_after("alice", "10.0.0.1") == 60


async def test_the_mailer_keeps_what_it_is_given() -> None:
    mailer = FakeMailer()
    message = Message(to="alice@example.com", subject="Hi", body="Hello")

    await mailer.send(message)

    assert mailer.sent == [message]


def test_the_audit_capture_reads_back_the_json_lines() -> None:
    audit = CapturedAudit()
    ctx: AuthContext = make_context(audit=audit)

    ctx.audit.record("login_failed", login="alice", reason="wrong_password")
    ctx.audit.record("login_locked", login="alice", seconds=900)

    assert audit.events() == ["login_failed", "login_locked"]
    assert audit.lines("login_locked")[0]["seconds"] == 900
    assert "wrong_password" in audit.text()
