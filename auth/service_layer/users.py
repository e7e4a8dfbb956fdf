"""Use cases on existing accounts: reading, listing, changing, deleting, checking a token's user.

Creating accounts is auth/service_layer/registrations.py.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from uuid import UUID

from auth.domain.errors import (
    InvalidCursorError,
    LastAdminError,
    NotAuthenticatedError,
    PermissionDeniedError,
    UserNotFoundError,
)
from auth.domain.model import Principal, ProfileField, Role, SettableStatus, User
from auth.service_layer.context import AuthContext, now
from auth.service_layer.unit_of_work import UnitOfWork
from events import Event, UserRoleChanged, UserStatusChanged

FOREIGN_ACCOUNT = "you may only access your own account"


async def get_user(ctx: AuthContext, *, actor: Principal, username: str) -> User:
    """A user as seen by the user themself or an admin."""
    _may_access(actor, username)
    async with ctx.uow_factory() as uow:
        return await _target(uow, actor, username)


@dataclass(frozen=True)
class Page:
    """One page of users and the cursor of the next (None on the last page)."""

    users: list[User]
    next_cursor: str | None


async def list_users(ctx: AuthContext, *, actor: Principal, limit: int, cursor: str | None) -> Page:
    """Users in username order, a page at a time (admins only)."""
    if not actor.is_admin:
        raise PermissionDeniedError("only admins may list users")
    after = _decode_cursor(cursor) if cursor else None
    async with ctx.uow_factory() as uow:
        # One more than asked tells whether another page follows.
        users = await uow.users.list_page(after=after, limit=limit + 1)
    if len(users) <= limit:
        return Page(users=users, next_cursor=None)
    last = users[limit - 1]
    return Page(users=users[:limit], next_cursor=_encode_cursor(last))


async def update_user(
    ctx: AuthContext,
    *,
    actor: Principal,
    username: str,
    profile: dict[ProfileField, str | None],
    role: Role | None = None,
    status: SettableStatus | None = None,
) -> User:
    """Change profile fields (the user or an admin), role and status (admins only).

    Disabling an account ends its sessions at once. No change may leave the system without
    an active admin.
    """
    if (role is not None or status is not None) and not actor.is_admin:
        raise PermissionDeniedError("only an admin may change a role or a status")
    _may_access(actor, username)
    moment = now()
    async with ctx.uow_factory() as uow:
        user = await _target(uow, actor, username)
        loses_admin = user.role == "admin" and user.status == "active"
        keeps_admin = (role or user.role) == "admin" and (status or user.status) == "active"
        if loses_admin and not keeps_admin and await uow.users.count_active_admins() <= 1:
            raise LastAdminError()
        user.update_profile(profile, now=moment)
        if role is not None:
            user.change_role(role, now=moment)
        if status is not None:
            user.change_status(status, now=moment)
            if status != "active":
                await uow.sessions.revoke_all(user.id, now=moment, reason=f"user {status}")
        recorded = [event for _, event in user.events]
        await uow.commit()
    for event in recorded:
        if isinstance(event, UserRoleChanged | UserStatusChanged):
            ctx.audit.record(
                _AUDIT_NAME[type(event)], by=actor.user_id, **event.model_dump(mode="json")
            )
    return user


_AUDIT_NAME: dict[type[Event], str] = {
    UserRoleChanged: "role_changed",
    UserStatusChanged: "status_changed",
}


async def delete_user(ctx: AuthContext, *, actor: Principal, username: str) -> None:
    """Delete an account: the user themself, or an admin; records UserDeleted and audits it."""
    _may_access(actor, username)
    async with ctx.uow_factory() as uow:
        user = await _target(uow, actor, username)
        is_active_admin = user.role == "admin" and user.status == "active"
        if is_active_admin and await uow.users.count_active_admins() <= 1:
            raise LastAdminError()
        user.delete(now=now(), reason="requested" if user.id == actor.user_id else "admin")
        # Its sessions and tokens go with the row (ON DELETE CASCADE): they stop at once.
        await uow.commit()
    ctx.audit.record("user_deleted", username=username, by=actor.user_id)


async def authenticated_user(ctx: AuthContext, *, principal: Principal) -> User:
    """The user behind a verified token, if it and its session are still good.

    A signature only proves the token was issued; this also rejects the tokens of deleted or
    disabled users, of demoted admins, and of sessions that ended (logout, password change).
    Every check reads committed state in one round trip (PrincipalStore), so a change made
    through any instance is seen by the very next request on every instance.
    """
    standing = await ctx.principals.standing(principal.user_id, principal.session_id, now=now())
    if standing is None or standing.user.status != "active":
        raise NotAuthenticatedError("the token's user no longer exists or is not active")
    if standing.user.role != principal.role:
        # A demoted admin's token must not keep its rights until it expires (a promoted
        # user simply refreshes to get the new role).
        raise NotAuthenticatedError("the token's role is out of date; refresh it")
    if principal.session_id is not None and not standing.session_live:
        raise NotAuthenticatedError("the token's session has ended")
    return standing.user


async def admin_target(uow: UnitOfWork, actor: Principal, username: str) -> User:
    """The user an admin acts on: PermissionDeniedError for a non-admin, 404 for no such user."""
    if not actor.is_admin:
        raise PermissionDeniedError("only admins may do this to another account")
    user = await uow.users.get_by_username(username)
    if user is None:
        raise UserNotFoundError(username)
    return user


def _may_access(actor: Principal, username: str) -> None:
    # Same answer whether or not the username exists: a non-admin learns nothing.
    if not actor.is_admin and actor.username.casefold() != username.casefold():
        raise PermissionDeniedError(FOREIGN_ACCOUNT)


async def _target(uow: UnitOfWork, actor: Principal, username: str) -> User:
    user = await uow.users.get_by_username(username)
    if user is None:
        if actor.is_admin:
            raise UserNotFoundError(username)
        raise NotAuthenticatedError("the token's user no longer exists")
    if not actor.is_admin and user.id != actor.user_id:
        # The name now belongs to a newer account than the one the token was issued for.
        raise PermissionDeniedError(FOREIGN_ACCOUNT)
    return user


def _encode_cursor(user: User) -> str:
    raw = json.dumps([user.username.lower(), str(user.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, user_id = json.loads(raw)
        return str(name), UUID(user_id)
    except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
        raise InvalidCursorError() from exc
