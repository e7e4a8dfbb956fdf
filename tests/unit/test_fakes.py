"""What only the fakes have: their fit to the ports, and the helpers unit tests inspect.

Whether a fake behaves like its real adapter is checked in tests/contract/, one abstract test
case per port run on both.
"""

from datetime import timedelta
from uuid import uuid4

from auth.adapters.rate_limit import LoginRateLimiter
from auth.adapters.reset_tokens import ResetTokenRepository
from auth.adapters.sessions import SessionRepository
from auth.adapters.verification_tokens import VerificationTokenRepository
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
    FakeVerificationTokenRepository,
    make_context,
)
from tests.unit.helpers import NOW

TTL = timedelta(days=30)


def test_the_fakes_fit_the_ports() -> None:
    # Checked by mypy: each assignment states the protocol the fake stands in for.
    tables = FakeAuthTables()
    hasher: PasswordHasher = FakePasswordHasher()
    uow_factory: UnitOfWorkFactory = FakeUnitOfWorkFactory()
    uow: UnitOfWork = FakeUnitOfWork()
    sessions: SessionRepository = FakeSessionRepository(tables)
    resets: ResetTokenRepository = FakeResetTokenRepository(tables)
    verifications: VerificationTokenRepository = FakeVerificationTokenRepository(tables)
    limiter: LoginRateLimiter = FakeLoginRateLimiter()
    mailer: Mailer = FakeMailer()

    assert all(
        part is not None
        for part in (hasher, uow_factory, uow, sessions, resets, verifications, limiter, mailer)
    )


async def test_a_unit_of_work_left_without_commit_says_so_and_stores_nothing() -> None:
    uow_factory = FakeUnitOfWorkFactory()

    async with uow_factory() as uow:
        await uow.sessions.create(uuid4(), now=NOW, ttl=TTL)

    assert not uow_factory.committed
    assert uow_factory.tables == FakeAuthTables()


async def test_only_digests_of_refresh_tokens_are_stored() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    async with uow_factory() as uow:
        _, token = await uow.sessions.create(uuid4(), now=NOW, ttl=TTL)
        await uow.commit()

    assert uow_factory.tables.refresh_token(token) is not None
    assert token.encode() not in uow_factory.tables.refresh_tokens


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


async def test_a_locked_username_waits_until_a_success() -> None:
    limiter = FakeLoginRateLimiter(wait_seconds=60)

    limiter.lock("Alice")

    assert await limiter.retry_after("alice", None) == 60
    await limiter.record_success("ALICE")
    assert await limiter.retry_after("alice", None) is None


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
