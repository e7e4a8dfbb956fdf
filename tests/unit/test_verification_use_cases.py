"""The email verification use cases on fakes: mails, single use, addresses, limits, logins."""

from datetime import timedelta

import pytest

from auth.domain.errors import (
    EmailNotVerifiedError,
    InvalidCredentialsError,
    InvalidFieldError,
    InvalidVerificationTokenError,
    MailLimitReachedError,
)
from auth.service_layer.authentication import log_in
from auth.service_layer.context import Lifetimes
from auth.service_layer.verification import (
    confirm_verification,
    limit_mail,
    request_own_verification,
    request_verification,
    send_verification,
)
from events import UserEmailVerified
from infra.mail import Message
from tests.unit.fakes import CapturedAudit, FakeMailer, FakeUnitOfWorkFactory, make_context
from tests.unit.helpers import PASSWORD, add_user, principal_of

LEAD_IN = "Use this verification token:\n\n  "


def token_in(message: Message) -> str:
    """The bare verification token a mail carries (sent without a verification URL)."""
    assert LEAD_IN in message.body, message.body
    return message.body.split(LEAD_IN, 1)[1].split("\n", 1)[0]


class CountingMailLimiter:
    """A MailRateLimiter allowing `allowed` mails in all, then asking to wait 42 s."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.taken: list[tuple[str, str | None, bool]] = []

    async def take(
        self, *, email: str, address: str | None, registration: bool = False
    ) -> int | None:
        if len(self.taken) >= self.allowed:
            return 42
        self.taken.append((email, address, registration))
        return None


async def test_a_mailed_token_verifies_once_and_records_the_event() -> None:
    uows, mailer, audit = FakeUnitOfWorkFactory(), FakeMailer(), CapturedAudit()
    ctx = make_context(uows, mailer=mailer, audit=audit)
    user = await add_user(uows)
    assert await send_verification(ctx, user_id=user.id)
    [mail] = mailer.sent
    assert mail.to == user.email
    token = token_in(mail)

    verified = await confirm_verification(ctx, token=token)
    assert verified.email_verified
    with pytest.raises(InvalidVerificationTokenError):
        await confirm_verification(ctx, token=token)
    assert isinstance(uows.outbox[-1][1], UserEmailVerified)
    assert token not in audit.text()
    # Verified: asking again mails nothing.
    assert not await send_verification(ctx, user_id=user.id)
    assert len(mailer.sent) == 1


async def test_an_expired_token_or_one_for_an_old_address_verifies_nothing() -> None:
    uows, mailer = FakeUnitOfWorkFactory(), FakeMailer()
    ctx = make_context(uows, mailer=mailer, lifetimes=Lifetimes(email_verification=timedelta(1)))
    user = await add_user(uows)
    await send_verification(ctx, user_id=user.id)
    uows.tables.age(timedelta(days=2))
    with pytest.raises(InvalidVerificationTokenError):
        await confirm_verification(ctx, token=token_in(mailer.sent[-1]))

    await send_verification(ctx, user_id=user.id)
    async with uows() as uow:
        stored = await uow.users.get(user.id)
        assert stored is not None
        stored.update_profile({"email": "alice@example.org"}, now=stored.updated_at)
        await uow.commit()
    with pytest.raises(InvalidVerificationTokenError):
        await confirm_verification(ctx, token=token_in(mailer.sent[-1]))


async def test_an_anonymous_request_mails_only_an_unverified_account() -> None:
    uows, mailer, audit = FakeUnitOfWorkFactory(), FakeMailer(), CapturedAudit()
    ctx = make_context(uows, mailer=mailer, audit=audit)
    user = await add_user(uows)
    await request_verification(ctx, email="nobody@example.com")
    assert mailer.sent == []
    await request_verification(ctx, email=user.email.upper())
    [mail] = mailer.sent
    await confirm_verification(ctx, token=token_in(mail))
    await request_verification(ctx, email=user.email)
    assert len(mailer.sent) == 1
    assert audit.events().count("verification_ignored") == 2


async def test_a_callers_request_is_for_their_own_address_and_is_limited() -> None:
    uows, mailer = FakeUnitOfWorkFactory(), FakeMailer()
    limits = CountingMailLimiter(allowed=1)
    ctx = make_context(uows, mailer=mailer, mail_limiter=limits)
    user = await add_user(uows)
    me = principal_of(user)
    with pytest.raises(InvalidFieldError):
        await request_own_verification(ctx, principal=me, email="x@example.com", address=None)
    assert await request_own_verification(ctx, principal=me, email=None, address="192.0.2.1")
    assert limits.taken == [(user.email, "192.0.2.1", False)]
    with pytest.raises(MailLimitReachedError) as refused:
        await request_own_verification(ctx, principal=me, email=user.email, address="192.0.2.1")
    assert refused.value.retry_after == 42
    assert refused.value.code == "too_many_requests"
    assert len(mailer.sent) == 1


async def test_limit_mail_counts_registrations_apart_and_refuses_over_the_limit() -> None:
    limits = CountingMailLimiter(allowed=1)
    audit = CapturedAudit()
    ctx = make_context(mail_limiter=limits, audit=audit)
    await limit_mail(ctx, email="a@example.com", address="192.0.2.2", registration=True)
    assert limits.taken == [("a@example.com", "192.0.2.2", True)]
    with pytest.raises(MailLimitReachedError):
        await limit_mail(ctx, email="a@example.com", address="192.0.2.2")
    assert audit.lines("mail_refused")[0]["retry_after"] == 42
    await limit_mail(make_context(), email="a@example.com", address=None)  # no limiter: open


async def test_required_verification_refuses_only_the_right_password() -> None:
    uows = FakeUnitOfWorkFactory()
    ctx = make_context(uows, require_verified_email=True)
    user = await add_user(uows)
    with pytest.raises(InvalidCredentialsError):
        await log_in(ctx, login=user.username, password="not it", address=None)
    with pytest.raises(EmailNotVerifiedError):
        await log_in(ctx, login=user.username, password=PASSWORD, address=None)
    async with uows() as uow:
        stored = await uow.users.get(user.id)
        assert stored is not None
        stored.verify_email(stored.email, now=stored.updated_at)
        await uow.commit()
    pair = await log_in(ctx, login=user.username, password=PASSWORD, address=None)
    assert pair.user.email_verified
