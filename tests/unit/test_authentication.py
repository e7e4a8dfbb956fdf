"""Logging in and out on in-memory fakes: credentials, brute-force limits, rotating sessions."""

import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
import pytest

from auth.adapters.secrets import digest
from auth.domain.errors import (
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    NotAuthenticatedError,
    RefreshTokenReusedError,
    TooManyAttemptsError,
)
from auth.service_layer.authentication import (
    authenticate,
    check_credentials,
    log_in,
    log_out,
    log_out_everywhere,
    refresh,
)
from auth.service_layer.context import AuthContext
from auth.service_layer.users import authenticated_user
from tests.unit.fakes import (
    ACCESS_TOKEN_TTL,
    CapturedAudit,
    FakeLoginRateLimiter,
    FakePasswordHasher,
    FakeUnitOfWorkFactory,
)
from tests.unit.helpers import PASSWORD, add_user, principal_of

ADDRESS = "203.0.113.7"
WRONG = "not the password"


# --- authenticate ----------------------------------------------------------------------------


@pytest.mark.parametrize("login", ["alice", "ALICE", "alice@example.com", "Alice@Example.com"])
async def test_a_user_authenticates_by_username_or_email_in_any_case(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, login: str
) -> None:
    user = await add_user(uow_factory, "alice")

    authenticated = await authenticate(ctx, login=login, password=PASSWORD)

    assert authenticated.id == user.id


async def test_an_unknown_user_costs_the_same_verification_as_a_wrong_password(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    await add_user(uow_factory, "alice")

    with pytest.raises(InvalidCredentialsError) as unknown:
        await authenticate(ctx, login="nobody", password=PASSWORD)
    with pytest.raises(InvalidCredentialsError) as wrong:
        await authenticate(ctx, login="alice", password=WRONG)

    # The hasher ran both times (the first against no hash, i.e. its dummy).
    assert hasher.verified == [(PASSWORD, None), (WRONG, "fake$" + PASSWORD)]
    assert (unknown.value.reason, wrong.value.reason) == ("unknown_user", "wrong_password")
    assert unknown.value.message == wrong.value.message == InvalidCredentialsError().message


async def test_a_disabled_user_cannot_authenticate_even_with_the_right_password(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice", status="disabled")

    with pytest.raises(InvalidCredentialsError) as caught:
        await authenticate(ctx, login="alice", password=PASSWORD)

    assert caught.value.reason == "user_disabled"


# --- check_credentials -----------------------------------------------------------------------


async def test_a_locked_login_is_refused_before_any_hashing(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    limiter: FakeLoginRateLimiter,
    audit: CapturedAudit,
) -> None:
    await add_user(uow_factory, "alice")
    limiter.lock("Alice")

    with pytest.raises(TooManyAttemptsError) as caught:
        await check_credentials(ctx, login="alice", password=PASSWORD, address=ADDRESS)

    assert caught.value.retry_after == limiter.wait_seconds
    assert hasher.verified == []
    (line,) = audit.lines()
    assert line["event"] == "login_refused"
    assert (line["login"], line["address"], line["retry_after"]) == (
        "alice",
        ADDRESS,
        limiter.wait_seconds,
    )


async def test_a_locked_address_is_refused_for_any_username(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    limiter: FakeLoginRateLimiter,
) -> None:
    await add_user(uow_factory, "alice")
    limiter.address_failures[ADDRESS] = limiter.per_address

    with pytest.raises(TooManyAttemptsError):
        await check_credentials(ctx, login="alice", password=PASSWORD, address=ADDRESS)
    user = await check_credentials(ctx, login="alice", password=PASSWORD, address="192.0.2.1")

    assert user.username == "alice"
    assert len(hasher.verified) == 1


@pytest.mark.parametrize(
    ("login", "reason"),
    [("alice", "wrong_password"), ("nobody", "unknown_user")],
    ids=["wrong-password", "unknown-user"],
)
async def test_a_failed_login_is_audited_with_its_reason_but_answered_alike(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    limiter: FakeLoginRateLimiter,
    audit: CapturedAudit,
    login: str,
    reason: str,
) -> None:
    await add_user(uow_factory, "alice")

    with pytest.raises(InvalidCredentialsError) as caught:
        await check_credentials(ctx, login=login, password=WRONG, address=ADDRESS)

    assert caught.value.message == "invalid username or password"
    (line,) = audit.lines()
    assert (line["event"], line["login"], line["reason"]) == ("login_failed", login, reason)
    assert limiter.username_failures == {login: 1}
    assert WRONG not in audit.text()


async def test_the_fifth_failure_locks_the_login_and_the_sixth_try_is_not_checked(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    audit: CapturedAudit,
) -> None:
    await add_user(uow_factory, "alice")

    for attempt in range(1, 6):
        with pytest.raises(InvalidCredentialsError):
            await check_credentials(ctx, login="alice", password=WRONG, address=ADDRESS)
        locked = audit.lines("login_locked")
        assert len(locked) == (1 if attempt == 5 else 0), f"after attempt {attempt}"
    with pytest.raises(TooManyAttemptsError):
        await check_credentials(ctx, login="ALICE", password=PASSWORD, address=ADDRESS)

    assert locked[0]["login"] == "alice"
    assert locked[0]["seconds"] == 900
    assert len(hasher.verified) == 5
    assert audit.events() == ["login_failed"] * 5 + ["login_locked", "login_refused"]


async def test_a_successful_login_forgets_the_earlier_failures(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, limiter: FakeLoginRateLimiter
) -> None:
    await add_user(uow_factory, "alice")
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            await check_credentials(ctx, login="alice", password=WRONG, address=None)

    await check_credentials(ctx, login="alice", password=PASSWORD, address=None)

    assert limiter.username_failures == {}
    for _ in range(4):
        with pytest.raises(InvalidCredentialsError):
            await check_credentials(ctx, login="alice", password=WRONG, address=None)
    assert await check_credentials(ctx, login="alice", password=PASSWORD, address=None)


async def test_failures_by_username_and_by_email_count_against_one_account(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice")
    for login in ["alice", "alice@example.com"] * 3:
        with contextlib.suppress(InvalidCredentialsError, TooManyAttemptsError):
            await check_credentials(ctx, login=login, password=WRONG, address=None)

    with pytest.raises(TooManyAttemptsError):
        await check_credentials(ctx, login="alice@example.com", password=PASSWORD, address=None)


# --- log_in ----------------------------------------------------------------------------------


async def test_logging_in_opens_a_session_with_an_access_and_a_refresh_token(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")

    pair = await log_in(ctx, login="alice@example.com", password=PASSWORD, address=ADDRESS)

    assert pair.user.id == alice.id
    assert pair.expires_in == int(ACCESS_TOKEN_TTL.total_seconds())
    assert pair.refresh_token
    (session,) = uow_factory.tables.live_sessions(alice.id)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert claims["sid"] == str(session.id)
    principal = ctx.tokens.verify(pair.access_token)
    assert (principal.user_id, principal.session_id) == (alice.id, session.id)
    grant_row = uow_factory.tables.refresh_token(pair.refresh_token)
    assert grant_row is not None
    assert grant_row.session_id == session.id
    (line,) = audit.lines()
    assert line["event"] == "login_succeeded"
    assert (line["session_id"], line["address"]) == (str(session.id), ADDRESS)
    assert pair.refresh_token not in audit.text()
    assert pair.access_token not in audit.text()


async def test_each_login_opens_its_own_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")

    first = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    second = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    assert first.refresh_token != second.refresh_token
    assert ctx.tokens.verify(first.access_token).session_id != (
        ctx.tokens.verify(second.access_token).session_id
    )
    assert len(uow_factory.tables.live_sessions(alice.id)) == 2


async def test_a_failed_login_opens_no_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice")

    with pytest.raises(InvalidCredentialsError):
        await log_in(ctx, login="alice", password=WRONG, address=None)

    assert uow_factory.tables.sessions == {}


# --- refresh ---------------------------------------------------------------------------------


async def test_refreshing_rotates_the_refresh_token_within_the_same_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    await add_user(uow_factory, "alice")
    first = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    second = await refresh(ctx, refresh_token=first.refresh_token, address=ADDRESS)

    assert second.refresh_token != first.refresh_token
    assert second.user.username == "alice"
    session_id = ctx.tokens.verify(first.access_token).session_id
    assert ctx.tokens.verify(second.access_token).session_id == session_id
    assert audit.lines("token_refreshed")[0]["session_id"] == str(session_id)
    third = await refresh(ctx, refresh_token=second.refresh_token, address=ADDRESS)
    assert third.refresh_token not in {first.refresh_token, second.refresh_token}


async def test_reusing_a_rotated_refresh_token_ends_the_whole_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    await add_user(uow_factory, "alice")
    stolen = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    newest = await refresh(ctx, refresh_token=stolen.refresh_token, address=None)
    principal = ctx.tokens.verify(newest.access_token)

    with pytest.raises(RefreshTokenReusedError):
        await refresh(ctx, refresh_token=stolen.refresh_token, address=ADDRESS)

    with pytest.raises(InvalidRefreshTokenError) as caught:
        await refresh(ctx, refresh_token=newest.refresh_token, address=None)
    assert not isinstance(caught.value, RefreshTokenReusedError)
    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=principal)
    (line,) = audit.lines("refresh_token_reused")
    assert (line["session_id"], line["address"]) == (str(principal.session_id), ADDRESS)
    assert stolen.refresh_token not in audit.text()


async def test_reuse_ends_only_the_session_of_the_reused_token(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice")
    stolen = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    other = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    await refresh(ctx, refresh_token=stolen.refresh_token, address=None)

    with pytest.raises(RefreshTokenReusedError):
        await refresh(ctx, refresh_token=stolen.refresh_token, address=None)

    assert await refresh(ctx, refresh_token=other.refresh_token, address=None)


async def test_an_unknown_refresh_token_is_invalid(ctx: AuthContext) -> None:
    with pytest.raises(InvalidRefreshTokenError):
        await refresh(ctx, refresh_token="never handed out", address=None)


@pytest.mark.parametrize("expired", ["session", "token"])
async def test_an_expired_session_or_refresh_token_is_invalid(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, expired: Literal["session", "token"]
) -> None:
    await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    tables = uow_factory.tables
    past = datetime.now(UTC) - timedelta(seconds=1)
    if expired == "session":
        (session,) = tables.sessions.values()
        tables.sessions[session.id] = replace(session, expires_at=past)
    else:
        key = digest(pair.refresh_token)
        tables.refresh_tokens[key] = replace(tables.refresh_tokens[key], expires_at=past)

    with pytest.raises(InvalidRefreshTokenError) as caught:
        await refresh(ctx, refresh_token=pair.refresh_token, address=None)

    assert not isinstance(caught.value, RefreshTokenReusedError)


async def test_a_session_unused_for_its_whole_lifetime_expires(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    uow_factory.tables.age(ctx.lifetimes.refresh_token)

    with pytest.raises(InvalidRefreshTokenError):
        await refresh(ctx, refresh_token=pair.refresh_token, address=None)
    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=ctx.tokens.verify(pair.access_token))


@pytest.mark.parametrize("status", ["disabled", "pending"])
async def test_the_refresh_token_of_a_user_who_cannot_log_in_is_invalid(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, status: Literal["disabled", "pending"]
) -> None:
    alice = await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    # Straight into the row: the check must hold even if no session was ended.
    uow_factory.rows[alice.id].status = status

    with pytest.raises(InvalidRefreshTokenError):
        await refresh(ctx, refresh_token=pair.refresh_token, address=None)


# --- log_out ---------------------------------------------------------------------------------


async def test_logging_out_ends_that_session_only(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    leaving = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    staying = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    await log_out(ctx, refresh_token=leaving.refresh_token)

    with pytest.raises(InvalidRefreshTokenError):
        await refresh(ctx, refresh_token=leaving.refresh_token, address=None)
    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=ctx.tokens.verify(leaving.access_token))
    assert await authenticated_user(ctx, principal=ctx.tokens.verify(staying.access_token))
    assert await refresh(ctx, refresh_token=staying.refresh_token, address=None)
    (line,) = audit.lines("logout")
    assert line["user_id"] == str(alice.id)


async def test_logging_out_with_an_unknown_token_is_silent_and_changes_nothing(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    units_before = len(uow_factory.units)

    await log_out(ctx, refresh_token="never handed out")

    assert not any(uow.committed for uow in uow_factory.units[units_before:])
    assert "logout" not in audit.events()
    assert await refresh(ctx, refresh_token=pair.refresh_token, address=None)


async def test_logging_out_everywhere_ends_every_session_and_counts_them(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    await add_user(uow_factory, "bob")
    pairs = [await log_in(ctx, login="alice", password=PASSWORD, address=None) for _ in range(3)]
    bobs = await log_in(ctx, login="bob", password=PASSWORD, address=None)
    principal = ctx.tokens.verify(pairs[0].access_token)

    ended = await log_out_everywhere(ctx, principal=principal)

    assert ended == 3
    for pair in pairs:
        with pytest.raises(InvalidRefreshTokenError):
            await refresh(ctx, refresh_token=pair.refresh_token, address=None)
    assert await refresh(ctx, refresh_token=bobs.refresh_token, address=None)
    (line,) = audit.lines("logout_all")
    assert (line["user_id"], line["sessions"]) == (str(alice.id), 3)


async def test_logging_out_everywhere_with_no_session_ends_none(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")

    assert await log_out_everywhere(ctx, principal=principal_of(alice)) == 0
