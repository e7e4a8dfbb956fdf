"""In-memory test doubles of the auth service's ports: no I/O, cosmicpython style."""

from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Self
from uuid import UUID

from auth.domain.errors import ConcurrentUpdateError, EmailTakenError, UsernameTakenError
from auth.domain.model import User
from events import Event

FAKE_HASH_PREFIX = "fake$"


class FakePasswordHasher:
    """PasswordHasher whose 'hash' is a prefix; it remembers every call, so tests see the work."""

    def __init__(self) -> None:
        self.hashed: list[str] = []
        self.verified: list[tuple[str, str | None]] = []

    async def hash(self, password: str) -> str:
        """The password behind a recognisable prefix."""
        self.hashed.append(password)
        return FAKE_HASH_PREFIX + password

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether the hash is this password's; never with no hash."""
        self.verified.append((password, password_hash))
        return password_hash is not None and password_hash == FAKE_HASH_PREFIX + password


def _copy(user: User) -> User:
    # A row, not the caller's object: later changes reach the store only through commit.
    return replace(user, events=[], deleted=False)


class FakeUserRepository:
    """UserRepository over a dict shared by units of work; behaves like the SQL one.

    Lookups are case-insensitive, a new user's username and email must be free, and a save
    fails with ConcurrentUpdateError when the stored version is no longer the one loaded.
    Saves are staged; the unit of work applies them on commit, all or nothing.
    """

    def __init__(self, rows: dict[UUID, User]) -> None:
        self.rows = rows
        self.seen: list[User] = []
        self._loaded_versions: dict[UUID, int] = {}
        self._added: dict[UUID, User] = {}
        self._staged: dict[UUID, User | None] = {}

    async def add(self, user: User) -> None:
        """Store a new user; UsernameTakenError or EmailTakenError when either is taken."""
        self._check_free(user, [*self.rows.values(), *self._added.values()])
        self._added[user.id] = _copy(user)
        self.seen.append(user)
        self._loaded_versions[user.id] = user.version

    async def get(self, user_id: UUID) -> User | None:
        """The user with this id."""
        return self._one(lambda user: user.id == user_id)

    async def get_by_username(self, username: str) -> User | None:
        """The user with this username (case-insensitive)."""
        return self._one(lambda user: user.username.lower() == username.lower())

    async def get_by_login(self, login: str) -> User | None:
        """The user whose username or email is `login` (case-insensitive)."""
        lowered = login.lower()
        return self._one(lambda user: lowered in (user.username.lower(), user.email.lower()))

    async def exists(self, *, username: str, email: str) -> bool:
        """Whether the username or the email is taken."""
        return any(
            user.username.lower() == username.lower() or user.email.lower() == email.lower()
            for user in self._visible()
        )

    async def save(self, user: User) -> None:
        """Stage the user's changes; ConcurrentUpdateError if another commit came first."""
        if user.id in self._added:
            # The unique indexes decide a race between two registrations at commit time.
            others = [row for row in self.rows.values() if row.id != user.id]
            self._check_free(user, others)
            self._staged[user.id] = None if user.deleted else _copy(user)
            return
        loaded = self._loaded_versions[user.id]
        if user.version == loaded:
            return
        stored = self.rows.get(user.id)
        if stored is None or stored.version != loaded:
            raise ConcurrentUpdateError()
        self._staged[user.id] = None if user.deleted else _copy(user)

    def apply(self) -> None:
        """Write the staged saves to the shared rows (the transaction's commit)."""
        for user_id, row in self._staged.items():
            if row is None:
                self.rows.pop(user_id, None)
            else:
                self.rows[user_id] = row
        for user in self.seen:
            self._loaded_versions[user.id] = user.version
        self._staged.clear()
        self._added.clear()

    def _visible(self) -> list[User]:
        return [*self.rows.values(), *self._added.values()]

    def _one(self, matches: Callable[[User], bool]) -> User | None:
        row = next((user for user in self._visible() if matches(user)), None)
        if row is None:
            return None
        user = _copy(row)
        self.seen.append(user)
        self._loaded_versions[user.id] = user.version
        return user

    @staticmethod
    def _check_free(user: User, others: list[User]) -> None:
        if any(other.username.lower() == user.username.lower() for other in others):
            raise UsernameTakenError(user.username)
        if any(other.email.lower() == user.email.lower() for other in others):
            raise EmailTakenError(user.email)


class FakeUnitOfWork:
    """UnitOfWork in memory: commit saves the seen users and appends their events to `outbox`.

    Leaving without commit drops every change and publishes nothing, like a rollback.
    """

    def __init__(
        self,
        rows: dict[UUID, User] | None = None,
        outbox: list[tuple[int, Event]] | None = None,
    ) -> None:
        self.rows: dict[UUID, User] = {} if rows is None else rows
        self.outbox: list[tuple[int, Event]] = [] if outbox is None else outbox
        self.committed = False
        self._users: FakeUserRepository | None = None

    @property
    def users(self) -> FakeUserRepository:
        """The users of this unit of work (only inside `async with`)."""
        assert self._users is not None, "use the unit of work inside `async with`"
        return self._users

    async def __aenter__(self) -> Self:
        self._users = FakeUserRepository(self.rows)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._users = None

    async def commit(self) -> None:
        """Save changed users and append their (sequence, event) pairs, all or nothing."""
        users = self.users
        recorded: list[tuple[int, Event]] = []
        for user in users.seen:
            await users.save(user)
            recorded.extend(user.events)
        # The outbox's UNIQUE (subject, sequence): a lost update can never reach the log.
        taken = {(event.user_id, sequence) for sequence, event in self.outbox}
        for sequence, event in recorded:
            assert (event.user_id, sequence) not in taken, f"duplicate sequence {sequence}"
            taken.add((event.user_id, sequence))
        users.apply()
        self.outbox.extend(recorded)
        for user in users.seen:
            user.events.clear()
        self.committed = True


class FakeUnitOfWorkFactory:
    """A `uow_factory`: every unit of work it makes shares one user store and one outbox."""

    def __init__(self) -> None:
        self.rows: dict[UUID, User] = {}
        self.outbox: list[tuple[int, Event]] = []
        self.units: list[FakeUnitOfWork] = []

    def __call__(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.rows, self.outbox)
        self.units.append(uow)
        return uow

    @property
    def committed(self) -> bool:
        """Whether any unit of work made here committed."""
        return any(uow.committed for uow in self.units)

    def events(self) -> list[Event]:
        """The events in the outbox, without their sequences."""
        return [event for _, event in self.outbox]
