"""Use cases of the auth service: plain verbs taking a unit of work and a hasher."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from auth.domain.errors import (
    ConcurrentUpdateError,
    EmailTakenError,
    InvalidCredentialsError,
    NotAuthenticatedError,
    PermissionDeniedError,
    UsernameTakenError,
    UserNotFoundError,
)
from auth.domain.model import Role, User
from auth.domain.passwords import PasswordHasher
from auth.service_layer.unit_of_work import UnitOfWork

UnitOfWorkFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    user_id: UUID
    username: str
    role: Role


def _now() -> datetime:
    return datetime.now(UTC)


async def register_user(
    uow_factory: UnitOfWorkFactory,
    hasher: PasswordHasher,
    *,
    username: str,
    email: str,
    password: str,
) -> User:
    """Create an account; its UserRegistered event is committed with it or not at all."""
    async with uow_factory() as uow:
        # Checked before hashing so that a taken name costs no bcrypt time; the unique
        # indexes still decide races between two registrations.
        if await uow.users.exists(username=username, email=email):
            existing = await uow.users.get_by_username(username)
            if existing is not None:
                raise UsernameTakenError(username)
            raise EmailTakenError(email)
    password_hash = await hasher.hash(password)
    user = User.register(username=username, email=email, password_hash=password_hash, now=_now())
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


async def authenticate(
    uow_factory: UnitOfWorkFactory, hasher: PasswordHasher, *, login: str, password: str
) -> User:
    """The active user whose username or email and password match; else InvalidCredentialsError.

    An unknown login still costs one bcrypt verification, so timing does not tell which
    usernames exist.
    """
    async with uow_factory() as uow:
        user = await uow.users.get_by_login(login)
    matches = await hasher.verify(password, user.password_hash if user else None)
    if user is None or not matches or user.status != "active":
        raise InvalidCredentialsError()
    return user


async def change_password(
    uow_factory: UnitOfWorkFactory,
    hasher: PasswordHasher,
    *,
    login: str,
    old_password: str,
    new_password: str,
) -> None:
    """Replace the password after checking the old one; records PasswordChanged."""
    user = await authenticate(uow_factory, hasher, login=login, password=old_password)
    new_hash = await hasher.hash(new_password)
    async with uow_factory() as uow:
        current = await uow.users.get(user.id)
        # The old password was checked against this hash: if it changed while we were
        # hashing, the check no longer holds and the caller must try again.
        if current is None or current.password_hash != user.password_hash:
            raise ConcurrentUpdateError()
        current.change_password(new_hash, reason="change", now=_now())
        await uow.commit()


async def delete_user(uow_factory: UnitOfWorkFactory, *, actor: Principal, username: str) -> None:
    """Delete an account: the user themself, or an admin; records UserDeleted."""
    is_admin = actor.role == "admin"
    if not is_admin and actor.username.lower() != username.lower():
        # Same answer whether or not the username exists: a non-admin learns nothing.
        raise PermissionDeniedError("you may only delete your own account")
    async with uow_factory() as uow:
        user = await uow.users.get_by_username(username)
        if user is None:
            if is_admin:
                raise UserNotFoundError(username)
            raise NotAuthenticatedError("the token's user no longer exists")
        if not is_admin and user.id != actor.user_id:
            # The name now belongs to a newer account than the one the token was issued for.
            raise PermissionDeniedError("you may only delete your own account")
        user.delete(now=_now(), reason="requested" if user.id == actor.user_id else "admin")
        await uow.commit()


async def current_user(uow_factory: UnitOfWorkFactory, principal: Principal) -> User:
    """The user behind a verified token; NotAuthenticatedError if it is gone or inactive."""
    async with uow_factory() as uow:
        user = await uow.users.get(principal.user_id)
    if user is None or user.status != "active":
        raise NotAuthenticatedError("the token's user no longer exists or is not active")
    return user
