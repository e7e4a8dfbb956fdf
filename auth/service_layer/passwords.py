"""Use cases on passwords: change (old password or session), reset by mailed token."""

from uuid import UUID

from auth.domain.errors import ConcurrentUpdateError, InvalidResetTokenError
from auth.domain.mfa_errors import MfaRequiredError
from auth.domain.model import Principal, User
from auth.domain.password_policy import check_new_password
from auth.service_layer.authentication import check_credentials
from auth.service_layer.context import AuthContext, now
from auth.service_layer.mfa_challenges import has_second_factor
from infra.mail import Message


async def change_password(
    ctx: AuthContext,
    *,
    old_password: str,
    new_password: str,
    login: str | None = None,
    principal: Principal | None = None,
    address: str | None = None,
) -> None:
    """Replace the password, proven by the old one; records PasswordChanged.

    With a bearer token (`principal`) every other session of the user ends; with a
    username, every session does. Old-password guesses count against the login limits.
    """
    if principal is not None:
        # The session proves who; the old password is still asked, so a stolen access
        # token alone cannot take the account over.
        login = principal.username
    assert login is not None, "a login or a principal is required"
    user = await check_credentials(ctx, login=login, password=old_password, address=address)
    if principal is not None and user.id != principal.user_id:
        raise ConcurrentUpdateError()
    if principal is None and await has_second_factor(ctx, user):
        # The password alone must not end the sessions of an account it cannot log into.
        raise MfaRequiredError("this account has a second factor: change it with a bearer token")
    check_new_password(new_password, user, field="new_password")
    new_hash = await ctx.hasher.hash(new_password)
    keep = principal.session_id if principal else None
    await _replace_hash(ctx, user, new_hash, keep_session=keep)
    ctx.audit.record("password_changed", user_id=user.id, username=user.username)


async def request_password_reset(ctx: AuthContext, *, email: str) -> None:
    """Mail a single-use reset token to the account with this email, if there is one.

    Callers answer before this runs, in the same way whether or not the account exists:
    neither the answer nor its timing tells which addresses are registered.
    """
    moment = now()
    async with ctx.uow_factory() as uow:
        user = await uow.users.get_by_email(email)
        if user is None or user.status != "active":
            ctx.audit.record("password_reset_ignored", reason="no active account")
            return
        token = await uow.password_resets.create(
            user.id, now=moment, ttl=ctx.lifetimes.password_reset
        )
        user.request_password_reset(now=moment)
        await uow.commit()
    minutes = int(ctx.lifetimes.password_reset.total_seconds() // 60)
    link = ctx.password_reset_url.format(token=token) if ctx.password_reset_url else None
    how = f"Open this link:\n\n  {link}\n" if link else f"Use this reset token:\n\n  {token}\n"
    await ctx.mailer.send(
        Message(
            to=user.email,
            subject="Reset your password",
            body=(
                f"Hello {user.username},\n\nsomeone asked to reset your password. {how}\n"
                f"It works once, for {minutes} minutes. If it was not you, ignore this mail:"
                " your password stays as it is.\n"
            ),
        )
    )
    ctx.audit.record("password_reset_requested", user_id=user.id)


async def confirm_password_reset(ctx: AuthContext, *, token: str, new_password: str) -> None:
    """Set a new password with a reset token; the token is spent and every session ends."""
    async with ctx.uow_factory() as uow:
        user_id = await uow.password_resets.find(token, now=now())
        user = await uow.users.get(user_id) if user_id else None
    if user is None or user.status != "active":
        raise InvalidResetTokenError()
    check_new_password(new_password, user, field="new_password")
    new_hash = await ctx.hasher.hash(new_password)
    async with ctx.uow_factory() as uow:
        # Locked and checked again: two confirmations with one token must not both succeed.
        if await uow.password_resets.find(token, now=now()) != user.id:
            raise InvalidResetTokenError()
        current = await uow.users.get(user.id)
        if current is None:
            raise InvalidResetTokenError()
        moment = now()
        current.change_password(new_hash, reason="reset", now=moment)
        await uow.password_resets.spend_all(user.id, now=moment)
        await uow.sessions.revoke_all(user.id, now=moment, reason="password reset")
        await uow.commit()
    ctx.audit.record("password_reset", user_id=user.id, username=user.username)


async def _replace_hash(
    ctx: AuthContext, user: User, new_hash: str, *, keep_session: UUID | None
) -> None:
    async with ctx.uow_factory() as uow:
        current = await uow.users.get(user.id)
        # The old password was checked against this hash: if it changed while we were
        # hashing, the check no longer holds and the caller must try again.
        if current is None or current.password_hash != user.password_hash:
            raise ConcurrentUpdateError()
        moment = now()
        current.change_password(new_hash, reason="change", now=moment)
        await uow.password_resets.spend_all(user.id, now=moment)
        await uow.sessions.revoke_all(
            user.id, now=moment, reason="password changed", keep=keep_session
        )
        await uow.commit()
