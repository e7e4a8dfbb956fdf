"""Loading and storing User aggregates with SQLAlchemy Core."""

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import Row, delete, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.adapters.orm import EMAIL_INDEX, USERNAME_INDEX, users
from auth.domain.errors import ConcurrentUpdateError, EmailTakenError, UsernameTakenError
from auth.domain.model import User


class UserRepository(Protocol):
    """Where users are kept; `seen` holds every user loaded or added, for their events."""

    seen: list[User]

    async def add(self, user: User) -> None:
        """Store a new user."""
        ...

    async def get(self, user_id: UUID) -> User | None:
        """The user with this id."""
        ...

    async def get_by_username(self, username: str) -> User | None:
        """The user with this username (case-insensitive)."""
        ...

    async def get_by_login(self, login: str) -> User | None:
        """The user whose username or email is `login` (case-insensitive)."""
        ...

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email address (case-insensitive)."""
        ...

    async def exists(self, *, username: str, email: str) -> bool:
        """Whether the username or the email is taken."""
        ...

    async def list_page(self, *, after: tuple[str, UUID] | None, limit: int) -> list[User]:
        """Users ordered by case-folded username then id, after the given position."""
        ...

    async def count_active_admins(self) -> int:
        """How many active admins there are."""
        ...

    async def pending_registrations(self, *, created_before: datetime, limit: int) -> list[User]:
        """Pending users registered before `created_before`, oldest first, at most `limit`.

        Locked for this transaction; rows another transaction holds are skipped.
        """
        ...

    async def save(self, user: User) -> None:
        """Write the user's changes (or its deletion) since it was loaded."""
        ...


class SqlAlchemyUserRepository:
    """UserRepository on one open connection; writes go out at once, inside its transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.seen: list[User] = []
        # Version each user had when loaded: the optimistic-lock condition of its UPDATE.
        self._loaded_versions: dict[UUID, int] = {}

    async def add(self, user: User) -> None:
        """Insert a new user; UsernameTakenError or EmailTakenError when either is taken."""
        # No savepoint: a failed insert ends the unit of work, which rolls everything back.
        try:
            await self._conn.execute(insert(users).values(**_columns(user)))
        except IntegrityError as exc:
            message = str(exc.orig)
            if USERNAME_INDEX in message:
                raise UsernameTakenError(user.username) from exc
            if EMAIL_INDEX in message:
                raise EmailTakenError(user.email) from exc
            raise
        self.seen.append(user)
        self._loaded_versions[user.id] = user.version

    async def get(self, user_id: UUID) -> User | None:
        """The user with this id."""
        return await self._one(users.c.id == user_id)

    async def get_by_username(self, username: str) -> User | None:
        """The user with this username (case-insensitive)."""
        return await self._one(func.lower(users.c.username) == username.lower())

    async def get_by_login(self, login: str) -> User | None:
        """The user whose username or email is `login` (case-insensitive)."""
        lowered = login.lower()
        return await self._one(
            or_(func.lower(users.c.username) == lowered, func.lower(users.c.email) == lowered)
        )

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email address (case-insensitive)."""
        return await self._one(func.lower(users.c.email) == email.lower())

    async def list_page(self, *, after: tuple[str, UUID] | None, limit: int) -> list[User]:
        """Users ordered by lower(username) then id (the unique index makes it a cheap scan)."""
        key = func.lower(users.c.username)
        query = select(users).order_by(key, users.c.id).limit(limit)
        if after is not None:
            query = query.where(tuple_(key, users.c.id) > tuple_(literal(after[0]), after[1]))
        return [_to_user(row) for row in await self._conn.execute(query)]

    async def count_active_admins(self) -> int:
        """How many active admins there are."""
        query = select(func.count()).where(users.c.role == "admin", users.c.status == "active")
        return int((await self._conn.execute(query)).scalar_one())

    async def pending_registrations(self, *, created_before: datetime, limit: int) -> list[User]:
        """Pending users registered before `created_before`, locked, skipping locked rows.

        SKIP LOCKED: two sweepers (or a sweeper and an answer being applied) never wait on
        each other, and never both compensate one user.
        """
        query = (
            select(users)
            .where(users.c.status == "pending", users.c.created_at < created_before)
            .order_by(users.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        found = [_to_user(row) for row in await self._conn.execute(query)]
        for user in found:
            self.seen.append(user)
            self._loaded_versions[user.id] = user.version
        return found

    async def exists(self, *, username: str, email: str) -> bool:
        """Whether the username or the email is taken (a cheap check before hashing)."""
        query = select(users.c.id).where(
            or_(
                func.lower(users.c.username) == username.lower(),
                func.lower(users.c.email) == email.lower(),
            )
        )
        return (await self._conn.execute(query.limit(1))).first() is not None

    async def save(self, user: User) -> None:
        """Write changes; ConcurrentUpdateError when someone else changed the user meanwhile."""
        loaded = self._loaded_versions[user.id]
        if user.version == loaded:
            return
        condition = (users.c.id == user.id) & (users.c.version == loaded)
        if user.deleted:
            result = await self._conn.execute(delete(users).where(condition))
        else:
            values = _columns(user)
            del values["id"], values["created_at"]
            try:
                result = await self._conn.execute(update(users).where(condition).values(**values))
            except IntegrityError as exc:
                if EMAIL_INDEX in str(exc.orig):
                    raise EmailTakenError(user.email) from exc
                raise
        if result.rowcount != 1:
            raise ConcurrentUpdateError()
        self._loaded_versions[user.id] = user.version

    async def _one(self, condition: Any) -> User | None:
        row = (await self._conn.execute(select(users).where(condition))).first()
        if row is None:
            return None
        user = _to_user(row)
        self.seen.append(user)
        self._loaded_versions[user.id] = user.version
        return user


def _columns(user: User) -> dict[str, Any]:
    return {column.name: getattr(user, column.name) for column in users.columns}


def _to_user(row: Row[Any]) -> User:
    return User(**row._mapping)
