"""Use cases of email verification, and the limits on every request that sends a mail.

A token is mailed at registration, on an email change and on request; confirming it marks
the address verified (UserEmailVerified). Each token is bound to the address it was mailed
to, so one mailed before an email change verifies nothing. Tokens only ever go into the
mail: never into an event, an audit line or an error.
"""

from uuid import UUID

from auth.adapters.secrets import new_secret
from auth.domain.errors import (
    InvalidFieldError,
    InvalidVerificationTokenError,
    MailLimitReachedError,
    NotAuthenticatedError,
)
from auth.domain.model import Principal, User
from auth.service_layer.context import AuthContext, now
from infra.mail import Message

# Accounts that may verify: a pending one (the registration saga) as well as an active one.
_MAY_VERIFY = ("active", "pending")


async def limit_mail(
    ctx: AuthContext, *, email: str, address: str | None, registration: bool = False
) -> None:
    """Count a mail to `email` asked for from `address`; MailLimitReachedError over a limit.

    Counted before anything is looked up, so the count and the answer are the same whether
    or not an account has the address.
    """
    if ctx.mail_limiter is None:
        return
    wait = await ctx.mail_limiter.take(email=email, address=address, registration=registration)
    if wait is not None:
        ctx.audit.record("mail_refused", address=address, retry_after=wait)
        raise MailLimitReachedError(wait)


async def send_verification(ctx: AuthContext, *, user_id: UUID) -> bool:
    """Mail a new verification token to the user's address; whether one was sent.

    Nothing is sent for an account that is gone, disabled or already verified. Earlier
    tokens of the user stop working.
    """
    moment = now()
    async with ctx.uow_factory() as uow:
        user = await uow.users.get(user_id)
        if user is None or user.email_verified or user.status not in _MAY_VERIFY:
            return False
        token = await uow.email_verifications.create(
            user.id, user.email, now=moment, ttl=ctx.lifetimes.email_verification
        )
        await uow.commit()
    await ctx.mailer.send(_verification_mail(ctx, user, token))
    ctx.audit.record("verification_mailed", user_id=user.id)
    return True


async def request_verification(ctx: AuthContext, *, email: str) -> None:
    """Mail a token to the unverified account with this address, if there is one.

    Callers answer before this runs, alike for every address; an unknown address still
    costs a token's making, so the server's work differs by the mail alone.
    """
    async with ctx.uow_factory() as uow:
        user = await uow.users.get_by_email(email)
    if user is None or user.email_verified or user.status not in _MAY_VERIFY:
        new_secret()
        ctx.audit.record("verification_ignored", reason="no unverified account")
        return
    await send_verification(ctx, user_id=user.id)


async def request_own_verification(
    ctx: AuthContext, *, principal: Principal, email: str | None, address: str | None
) -> bool:
    """Mail the caller a token for their current address; whether one was sent.

    `email`, if given, must be that address. An address already verified gets no mail.
    """
    async with ctx.uow_factory() as uow:
        user = await uow.users.get(principal.user_id)
    if user is None:
        raise NotAuthenticatedError("the token's user no longer exists")
    if email is not None and email.casefold() != user.email.casefold():
        raise InvalidFieldError("with a bearer token, give your own address or none", "email")
    if user.email_verified:
        return False
    await limit_mail(ctx, email=user.email, address=address)
    return await send_verification(ctx, user_id=user.id)


async def confirm_verification(ctx: AuthContext, *, token: str) -> User:
    """Mark the address a token was mailed to verified; the token is spent.

    InvalidVerificationTokenError for a token unknown, used or expired, or mailed to an
    address the user no longer has.
    """
    moment = now()
    async with ctx.uow_factory() as uow:
        # Locked: two confirmations with one token cannot both succeed.
        grant = await uow.email_verifications.find(token, now=moment)
        user = await uow.users.get(grant.user_id) if grant else None
        if grant is None or user is None or not user.verify_email(grant.email, now=moment):
            raise InvalidVerificationTokenError()
        await uow.email_verifications.spend_all(user.id, now=moment)
        await uow.commit()
    ctx.audit.record("email_verified", user_id=user.id, username=user.username)
    return user


def _verification_mail(ctx: AuthContext, user: User, token: str) -> Message:
    hours = int(ctx.lifetimes.email_verification.total_seconds() // 3600)
    minutes = int(ctx.lifetimes.email_verification.total_seconds() // 60)
    lifetime = f"{hours} hours" if hours >= 2 else f"{minutes} minutes"
    url = ctx.email_verification_url
    link = url.format(token=token) if url else None
    how = (
        f"Open this link:\n\n  {link}\n" if link else f"Use this verification token:\n\n  {token}\n"
    )
    return Message(
        to=user.email,
        subject="Verify your email address",
        body=(
            f"Hello {user.username},\n\nplease confirm that this is your address. {how}\n"
            f"It works once, for {lifetime}. If you did not sign up, ignore this mail.\n"
        ),
    )
