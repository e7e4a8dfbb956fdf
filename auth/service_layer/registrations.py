"""Use cases of registration: creating accounts, and the saga's settling of pending ones.

With `require_profile` on, a new account is `pending` until the profile service answers.
ProfileCreated completes the registration (UserStatusChanged pending -> active);
ProfileRejected fails it (UserDeleted, reason `registration_failed`); an account still
pending after the timeout expires (UserDeleted, reason `registration_expired`). Each change
goes through the unit of work, so the events reach the outbox in the same transaction.
An answer for an account that is no longer pending (already active, deleted, expired,
settled by an admin) changes nothing.
"""

from datetime import timedelta
from uuid import UUID

from auth.domain.errors import EmailTakenError, PermissionDeniedError, UsernameTakenError
from auth.domain.model import Principal, Role, User, check_username
from auth.domain.password_policy import check_new_password
from auth.service_layer.context import AuthContext, now

REGISTRATION_FAILED = "registration_failed"
REGISTRATION_EXPIRED = "registration_expired"


async def register_user(
    ctx: AuthContext,
    *,
    username: str,
    email: str,
    password: str,
    display_name: str | None = None,
    role: Role = "user",
    actor: Principal | None = None,
) -> User:
    """Create an account; its UserRegistered event is committed with it or not at all.

    With `ctx.require_profile` (the registration saga) it starts pending, unable to log in
    until its profile exists.
    """
    if role != "user" and not (actor and actor.is_admin):
        raise PermissionDeniedError("only an admin may choose the role of a new user")
    user = await _register(
        ctx, username=username, email=email, password=password, display_name=display_name,
        role=role, pending=ctx.require_profile,
    )  # fmt: skip
    ctx.audit.record(
        "user_registered", user_id=user.id, username=user.username, role=user.role,
        status=user.status, by=actor.user_id if actor else None,
    )  # fmt: skip
    return user


async def create_admin(ctx: AuthContext, *, username: str, email: str, password: str) -> User:
    """An active admin account, for bootstrapping a deployment from the command line."""
    user = await _register(
        ctx, username=username, email=email, password=password, display_name=None,
        role="admin", pending=False,
    )  # fmt: skip
    # by=None and via="cli": no principal made this admin, the operator's shell did.
    ctx.audit.record(
        "user_registered", user_id=user.id, username=user.username, role=user.role,
        status=user.status, by=None, via="cli",
    )  # fmt: skip
    return user


async def _register(
    ctx: AuthContext,
    *,
    username: str,
    email: str,
    password: str,
    display_name: str | None,
    role: Role,
    pending: bool,
) -> User:
    check_new_password(password, username=username, email=email)
    check_username(username)
    async with ctx.uow_factory() as uow:
        # Checked before hashing so that a taken name costs no bcrypt time; the unique
        # indexes still decide races between two registrations.
        if await uow.users.exists(username=username, email=email):
            if await uow.users.get_by_username(username) is not None:
                raise UsernameTakenError(username)
            raise EmailTakenError(email)
    password_hash = await ctx.hasher.hash(password)
    user = User.register(
        username=username,
        email=email,
        password_hash=password_hash,
        now=now(),
        role=role,
        display_name=display_name,
        pending=pending,
    )
    async with ctx.uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


async def complete_registration(ctx: AuthContext, *, user_id: UUID) -> bool:
    """Activate the pending account `user_id`; whether it was pending."""
    async with ctx.uow_factory() as uow:
        user = await uow.users.get(user_id)
        if user is None or not user.complete_registration(now=now()):
            return False
        await uow.commit()
    ctx.audit.record("registration_completed", user_id=user_id, username=user.username)
    return True


async def fail_registration(ctx: AuthContext, *, user_id: UUID, why: str) -> bool:
    """Delete the pending account `user_id` (the profile was refused); whether it was pending."""
    async with ctx.uow_factory() as uow:
        user = await uow.users.get(user_id)
        if user is None or not user.fail_registration(now=now(), reason=REGISTRATION_FAILED):
            return False
        await uow.commit()
    ctx.audit.record("registration_failed", user_id=user_id, username=user.username, why=why)
    return True


async def expire_registrations(ctx: AuthContext, *, timeout: timedelta, limit: int) -> int:
    """Delete up to `limit` accounts pending for longer than `timeout`, in one transaction.

    The rows are locked with SKIP LOCKED, so two sweepers share the work. An answer applied
    to one of them at the same moment either holds the row (this sweep skips it) or fails
    its versioned update once this sweep has committed, and its retry finds the account
    gone: a no-op.
    """
    moment = now()
    async with ctx.uow_factory() as uow:
        expired = await uow.users.pending_registrations(
            created_before=moment - timeout, limit=limit
        )
        for user in expired:
            user.fail_registration(now=moment, reason=REGISTRATION_EXPIRED)
        if expired:
            await uow.commit()
    for user in expired:
        ctx.audit.record("registration_expired", user_id=user.id, username=user.username)
    return len(expired)
