"""Changing and resetting passwords on in-memory fakes: policy, sessions, single-use tokens."""

from dataclasses import replace

import pytest

from auth.domain.errors import (
    ConcurrentUpdateError,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    InvalidResetTokenError,
    NotAuthenticatedError,
    WeakPasswordError,
)
from auth.service_layer.authentication import TokenPair, authenticate, log_in, refresh
from auth.service_layer.context import AuthContext
from auth.service_layer.passwords import (
    change_password,
    confirm_password_reset,
    request_password_reset,
)
from auth.service_layer.users import authenticated_user, update_user
from events import PasswordChanged, PasswordResetRequested
from tests.unit.fakes import (
    CapturedAudit,
    FakeLoginRateLimiter,
    FakeMailer,
    FakePasswordHasher,
    FakeUnitOfWorkFactory,
    make_context,
)
from tests.unit.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    add_user,
    is_stored_reset_token,
    principal_of,
    reset_token_in,
)


async def sessions_of(ctx: AuthContext, count: int) -> list[TokenPair]:
    return [await log_in(ctx, login="alice", password=PASSWORD, address=None) for _ in range(count)]


async def refreshes(ctx: AuthContext, pair: TokenPair) -> bool:
    """Whether the pair's session still lives (refreshing spends the token either way)."""
    try:
        await refresh(ctx, refresh_token=pair.refresh_token, address=None)
    except InvalidRefreshTokenError:
        return False
    return True


async def logs_in_with(ctx: AuthContext, password: str) -> bool:
    try:
        await authenticate(
            replace(ctx, hasher=FakePasswordHasher()), login="alice", password=password
        )
    except InvalidCredentialsError:
        return False
    return True


async def requested_token(ctx: AuthContext, mailer: FakeMailer, email: str) -> str:
    await request_password_reset(ctx, email=email)
    return reset_token_in(mailer.sent[-1])


# --- change_password -------------------------------------------------------------------------


async def test_changing_the_password_by_login_records_it_and_ends_every_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    pairs = await sessions_of(ctx, 2)

    await change_password(ctx, login="alice", old_password=PASSWORD, new_password=NEW_PASSWORD)

    sequence, event = uow_factory.outbox[-1]
    assert sequence == 2 == uow_factory.rows[alice.id].version
    assert isinstance(event, PasswordChanged)
    assert event == PasswordChanged(user_id=alice.id, changed_at=event.changed_at, reason="change")
    assert [await refreshes(ctx, pair) for pair in pairs] == [False, False]
    assert await logs_in_with(ctx, NEW_PASSWORD)
    assert not await logs_in_with(ctx, PASSWORD)
    assert audit.lines("password_changed")[0]["user_id"] == str(alice.id)
    assert PASSWORD not in audit.text()
    assert NEW_PASSWORD not in audit.text()


async def test_changing_the_password_with_a_token_keeps_that_session_and_ends_the_others(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice")
    current, other = await sessions_of(ctx, 2)
    principal = ctx.tokens.verify(current.access_token)

    await change_password(
        ctx, principal=principal, old_password=PASSWORD, new_password=NEW_PASSWORD
    )

    assert await authenticated_user(ctx, principal=principal)
    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=ctx.tokens.verify(other.access_token))
    assert [await refreshes(ctx, pair) for pair in (current, other)] == [True, False]


async def test_changing_the_password_with_a_sessionless_token_ends_every_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")
    (pair,) = await sessions_of(ctx, 1)

    await change_password(
        ctx, principal=principal_of(alice), old_password=PASSWORD, new_password=NEW_PASSWORD
    )

    assert not await refreshes(ctx, pair)


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [("password1", "too common"), ("alice-in-wonderland", "username"), ("short", "at least")],
    ids=["too-common", "contains-username", "too-short"],
)
async def test_a_weak_new_password_is_refused_naming_new_password_and_nothing_changes(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    new_password: str,
    reason: str,
) -> None:
    alice = await add_user(uow_factory, "alice")
    (pair,) = await sessions_of(ctx, 1)

    with pytest.raises(WeakPasswordError) as caught:
        await change_password(ctx, login="alice", old_password=PASSWORD, new_password=new_password)

    assert caught.value.field == "new_password"
    assert reason in caught.value.message
    assert hasher.hashed == []
    assert uow_factory.rows[alice.id].version == 1
    assert await refreshes(ctx, pair)


async def test_a_wrong_old_password_changes_nothing_and_counts_as_a_failed_login(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    limiter: FakeLoginRateLimiter,
) -> None:
    alice = await add_user(uow_factory, "alice")

    with pytest.raises(InvalidCredentialsError):
        await change_password(
            ctx, login="alice", old_password="wrong!!!", new_password=NEW_PASSWORD
        )

    assert len(uow_factory.outbox) == 1
    assert uow_factory.rows[alice.id].version == 1
    assert hasher.hashed == []
    assert limiter.username_failures == {"alice": 1}


async def test_a_password_changed_meanwhile_makes_the_change_fail_without_an_event(
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    await add_user(uow_factory, "alice")

    class FakeInterleavedHasher(FakePasswordHasher):
        """A second change of the same password commits while this one hashes."""

        async def hash(self, password: str) -> str:
            if len(self.hashed) == 0:
                await change_password(
                    make_context(uow_factory),
                    login="alice",
                    old_password=PASSWORD,
                    new_password="the other one",
                )
            return await super().hash(password)

    ctx = make_context(uow_factory, hasher=FakeInterleavedHasher())

    with pytest.raises(ConcurrentUpdateError):
        await change_password(ctx, login="alice", old_password=PASSWORD, new_password="this one")

    assert [sequence for sequence, _ in uow_factory.outbox] == [1, 2]
    assert await logs_in_with(ctx, "the other one")


async def test_changing_the_password_voids_an_outstanding_reset_token(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer
) -> None:
    await add_user(uow_factory, "alice")
    token = await requested_token(ctx, mailer, "alice@example.com")

    await change_password(ctx, login="alice", old_password=PASSWORD, new_password=NEW_PASSWORD)

    with pytest.raises(InvalidResetTokenError):
        await confirm_password_reset(ctx, token=token, new_password="yet another passphrase")


# --- request_password_reset ------------------------------------------------------------------


@pytest.mark.parametrize("account", ["none", "disabled"])
async def test_a_reset_for_an_address_without_an_active_account_sends_nothing(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    mailer: FakeMailer,
    audit: CapturedAudit,
    account: str,
) -> None:
    if account == "disabled":
        await add_user(uow_factory, "alice", status="disabled")
    outbox_before = list(uow_factory.outbox)

    await request_password_reset(ctx, email="alice@example.com")

    assert mailer.sent == []
    assert uow_factory.outbox == outbox_before
    assert uow_factory.tables.password_resets == {}
    assert audit.events() == ["password_reset_ignored"]
    assert "alice@example.com" not in audit.text()


async def test_a_reset_mails_one_token_and_records_the_request_without_it(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    await update_user(
        ctx, actor=principal_of(alice), username="alice", profile={"display_name": "A"}
    )
    version_before = uow_factory.rows[alice.id].version

    await request_password_reset(ctx, email="ALICE@Example.com")

    (message,) = mailer.sent
    assert message.to == "alice@example.com"
    token = reset_token_in(message)
    assert is_stored_reset_token(uow_factory, token)
    sequence, event = uow_factory.outbox[-1]
    assert sequence == version_before + 1 == uow_factory.rows[alice.id].version
    assert isinstance(event, PasswordResetRequested)
    assert event == PasswordResetRequested(user_id=alice.id, requested_at=event.requested_at)
    assert token not in audit.text()
    assert not [e for _, e in uow_factory.outbox if token in e.model_dump_json()]
    assert audit.lines("password_reset_requested")[0]["user_id"] == str(alice.id)


async def test_with_a_reset_url_the_mail_holds_the_link(
    uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer
) -> None:
    await add_user(uow_factory, "alice")
    ctx = make_context(uow_factory, mailer=mailer, password_reset_url="https://x/reset?t={token}")

    await request_password_reset(ctx, email="alice@example.com")

    (message,) = mailer.sent
    link = next(word for word in message.body.split() if word.startswith("https://x/reset?t="))
    token = link.removeprefix("https://x/reset?t=")
    assert is_stored_reset_token(uow_factory, token)
    await confirm_password_reset(ctx, token=token, new_password=NEW_PASSWORD)


# --- confirm_password_reset ------------------------------------------------------------------


async def test_a_reset_token_sets_the_password_and_ends_every_session(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    pairs = await sessions_of(ctx, 2)
    token = await requested_token(ctx, mailer, "alice@example.com")

    await confirm_password_reset(ctx, token=token, new_password=NEW_PASSWORD)

    event = uow_factory.events()[-1]
    assert isinstance(event, PasswordChanged)
    assert event == PasswordChanged(user_id=alice.id, changed_at=event.changed_at, reason="reset")
    assert await logs_in_with(ctx, NEW_PASSWORD)
    assert not await logs_in_with(ctx, PASSWORD)
    assert [await refreshes(ctx, pair) for pair in pairs] == [False, False]
    assert audit.lines("password_reset")[0]["user_id"] == str(alice.id)
    assert token not in audit.text()


async def test_a_reset_token_works_only_once(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer
) -> None:
    await add_user(uow_factory, "alice")
    token = await requested_token(ctx, mailer, "alice@example.com")
    await confirm_password_reset(ctx, token=token, new_password=NEW_PASSWORD)
    outbox_before = list(uow_factory.outbox)

    with pytest.raises(InvalidResetTokenError):
        await confirm_password_reset(ctx, token=token, new_password="yet another passphrase")

    assert uow_factory.outbox == outbox_before
    assert await logs_in_with(ctx, NEW_PASSWORD)


async def test_a_second_reset_request_voids_the_first_token(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer
) -> None:
    await add_user(uow_factory, "alice")
    first = await requested_token(ctx, mailer, "alice@example.com")
    second = await requested_token(ctx, mailer, "alice@example.com")

    with pytest.raises(InvalidResetTokenError):
        await confirm_password_reset(ctx, token=first, new_password=NEW_PASSWORD)
    await confirm_password_reset(ctx, token=second, new_password=NEW_PASSWORD)

    assert first != second


async def test_an_expired_reset_token_is_refused(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer
) -> None:
    await add_user(uow_factory, "alice")
    token = await requested_token(ctx, mailer, "alice@example.com")

    uow_factory.tables.age(ctx.lifetimes.password_reset)

    with pytest.raises(InvalidResetTokenError):
        await confirm_password_reset(ctx, token=token, new_password=NEW_PASSWORD)
    assert await logs_in_with(ctx, PASSWORD)


async def test_an_unknown_reset_token_is_refused(ctx: AuthContext) -> None:
    with pytest.raises(InvalidResetTokenError):
        await confirm_password_reset(ctx, token="never handed out", new_password=NEW_PASSWORD)


async def test_a_weak_password_keeps_the_reset_token_usable(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
    mailer: FakeMailer,
    hasher: FakePasswordHasher,
) -> None:
    await add_user(uow_factory, "alice")
    token = await requested_token(ctx, mailer, "alice@example.com")

    with pytest.raises(WeakPasswordError) as caught:
        await confirm_password_reset(ctx, token=token, new_password="alice1234")

    assert caught.value.field == "new_password"
    assert hasher.hashed == []
    await confirm_password_reset(ctx, token=token, new_password=NEW_PASSWORD)


async def test_the_reset_token_of_a_user_disabled_meanwhile_is_refused(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, mailer: FakeMailer
) -> None:
    alice = await add_user(uow_factory, "alice")
    token = await requested_token(ctx, mailer, "alice@example.com")
    uow_factory.rows[alice.id].status = "disabled"

    with pytest.raises(InvalidResetTokenError):
        await confirm_password_reset(ctx, token=token, new_password=NEW_PASSWORD)
