"""Use cases on accounts: registration, reading, listing, changing and deleting users."""

import base64
import binascii
import json
from dataclasses import dataclass
from uuid import UUID

from auth.domain.errors import (
    EmailTakenError,
    InvalidCursorError,
    LastAdminError,
    NotAuthenticatedError,
    PermissionDeniedError,
    UsernameTakenError,
    UserNotFoundError,
    WeakPasswordError,
)
from auth.domain.model import Principal, ProfileField, Role, Status, User
from auth.domain.password_policy import password_problem
from auth.domain.passwords import PasswordHasher
from auth.security.audit import AuditLog
from auth.service_layer.context import UnitOfWorkFactory, now
from auth.service_layer.unit_of_work import UnitOfWork
from events import Event, UserRoleChanged, UserStatusChanged

FOREIGN_ACCOUNT = "you may only access your own account"


def check_new_password(password: str, user: User | None = None, *, field: str = "password",
                       username: str | None = None, email: str | None = None) -> None:  # fmt: skip
    """Raise WeakPasswordError when the password breaks the policy for this account."""
    problem = password_problem(
        password,
        username=user.username if user else username,
        email=user.email if user else email,
    )
    if problem is not None:
        raise WeakPasswordError(problem, field=field)


async def register_user(
    uow_factory: UnitOfWorkFactory,
    hasher: PasswordHasher,
    *,
    username: str,
    email: str,
    password: str,
    display_name: str | None = None,
    role: Role = "user",
    actor: Principal | None = None,
    pending: bool = False,
) -> User:
    """Create an account; its UserRegistered event is committed with it or not at all.

    `pending` (the registration saga) creates it unable to log in until its profile exists.
    """
    if role != "user" and not (actor and actor.is_admin):
        raise PermissionDeniedError("only an admin may choose the role of a new user")
    return await _register(
        uow_factory, hasher, username=username, email=email, password=password,
        display_name=display_name, role=role, pending=pending,
    )  # fmt: skip


async def create_admin(
    uow_factory: UnitOfWorkFactory, hasher: PasswordHasher, *, username: str, email: str,
    password: str,
) -> User:  # fmt: skip
    """An admin account, for bootstrapping a deployment from the command line."""
    return await _register(
        uow_factory, hasher, username=username, email=email, password=password,
        display_name=None, role="admin",
    )  # fmt: skip


async def _register(
    uow_factory: UnitOfWorkFactory,
    hasher: PasswordHasher,
    *,
    username: str,
    email: str,
    password: str,
    display_name: str | None,
    role: Role,
    pending: bool = False,
) -> User:
    check_new_password(password, username=username, email=email)
    async with uow_factory() as uow:
        # Checked before hashing so that a taken name costs no bcrypt time; the unique
        # indexes still decide races between two registrations.
        if await uow.users.exists(username=username, email=email):
            if await uow.users.get_by_username(username) is not None:
                raise UsernameTakenError(username)
            raise EmailTakenError(email)
    password_hash = await hasher.hash(password)
    user = User.register(
        username=username,
        email=email,
        password_hash=password_hash,
        now=now(),
        role=role,
        display_name=display_name,
        pending=pending,
    )
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


async def get_user(uow_factory: UnitOfWorkFactory, *, actor: Principal, username: str) -> User:
    """A user as seen by the user themself or an admin."""
    _may_access(actor, username)
    async with uow_factory() as uow:
        return await _target(uow, actor, username)


@dataclass(frozen=True)
class Page:
    """One page of users and the cursor of the next (None on the last page)."""

    users: list[User]
    next_cursor: str | None


async def list_users(
    uow_factory: UnitOfWorkFactory, *, actor: Principal, limit: int, cursor: str | None
) -> Page:
    """Users in username order, a page at a time (admins only)."""
    if not actor.is_admin:
        raise PermissionDeniedError("only admins may list users")
    after = _decode_cursor(cursor) if cursor else None
    async with uow_factory() as uow:
        # One more than asked tells whether another page follows.
        users = await uow.users.list_page(after=after, limit=limit + 1)
    if len(users) <= limit:
        return Page(users=users, next_cursor=None)
    last = users[limit - 1]
    return Page(users=users[:limit], next_cursor=_encode_cursor(last))


async def update_user(
    uow_factory: UnitOfWorkFactory,
    *,
    actor: Principal,
    username: str,
    profile: dict[ProfileField, str | None],
    role: Role | None = None,
    status: Status | None = None,
    audit: AuditLog | None = None,
) -> User:
    """Change profile fields (the user or an admin), role and status (admins only).

    Disabling an account ends its sessions at once. No change may leave the system without
    an active admin.
    """
    if (role is not None or status is not None) and not actor.is_admin:
        raise PermissionDeniedError("only an admin may change a role or a status")
    _may_access(actor, username)
    moment = now()
    async with uow_factory() as uow:
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
    if audit is not None:
        for event in recorded:
            if isinstance(event, UserRoleChanged | UserStatusChanged):
                audit.record(
                    _AUDIT_NAME[type(event)], by=actor.user_id, **event.model_dump(mode="json")
                )
    return user


_AUDIT_NAME: dict[type[Event], str] = {
    UserRoleChanged: "role_changed",
    UserStatusChanged: "status_changed",
}


async def delete_user(uow_factory: UnitOfWorkFactory, *, actor: Principal, username: str) -> None:
    """Delete an account: the user themself, or an admin; records UserDeleted."""
    _may_access(actor, username)
    async with uow_factory() as uow:
        user = await _target(uow, actor, username)
        is_active_admin = user.role == "admin" and user.status == "active"
        if is_active_admin and await uow.users.count_active_admins() <= 1:
            raise LastAdminError()
        user.delete(now=now(), reason="requested" if user.id == actor.user_id else "admin")
        # Its sessions and tokens go with the row (ON DELETE CASCADE): they stop at once.
        await uow.commit()


async def authenticated_user(uow_factory: UnitOfWorkFactory, principal: Principal) -> User:
    """The user behind a verified token, if it and its session are still good.

    A signature only proves the token was issued; this also rejects the tokens of deleted or
    disabled users and of sessions that ended (logout, password change).
    """
    async with uow_factory() as uow:
        user = await uow.users.get(principal.user_id)
        if user is None or user.status != "active":
            raise NotAuthenticatedError("the token's user no longer exists or is not active")
        if user.role != principal.role:
            # A demoted admin's token must not keep its rights until it expires (a promoted
            # user simply refreshes to get the new role).
            raise NotAuthenticatedError("the token's role is out of date; refresh it")
        if principal.session_id is not None and not await uow.sessions.is_active(
            principal.session_id, user.id, now=now()
        ):
            raise NotAuthenticatedError("the token's session has ended")
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
