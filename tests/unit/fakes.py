"""In-memory test doubles of the auth service's ports: no I/O, cosmicpython style."""

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric import ed25519

from auth.adapters.principals import Standing
from auth.adapters.rate_limit import MailRateLimiter
from auth.adapters.secrets import digest, new_secret
from auth.adapters.sessions import RefreshGrant
from auth.adapters.verification_tokens import VerificationGrant
from auth.domain.errors import ConcurrentUpdateError, EmailTakenError, UsernameTakenError
from auth.domain.model import User
from auth.domain.password_policy import MAX_PASSWORD_BYTES
from auth.domain.sessions import Client
from auth.security.audit import AuditLog
from auth.security.tokens import TokenService
from auth.service_layer.context import AuthContext, Lifetimes
from events import Event
from infra.mail import Message

FAKE_HASH_PREFIX = "fake$"
# A session's client when the caller names none.
NOWHERE = Client()
TOKEN_ISSUER = "userbus-unit"
TOKEN_AUDIENCE = "userbus-unit-clients"
ACCESS_TOKEN_TTL = timedelta(minutes=15)


class FakePasswordHasher:
    """PasswordHasher whose 'hash' is a prefix; it remembers every call, so tests see the work."""

    def __init__(self) -> None:
        self.hashed: list[str] = []
        self.verified: list[tuple[str, str | None]] = []

    async def hash(self, password: str) -> str:
        """The password behind a recognisable prefix; ValueError over 72 bytes, as bcrypt."""
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise ValueError(f"password cannot be longer than {MAX_PASSWORD_BYTES} bytes")
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

    Lookups are case-insensitive, usernames and emails are unique, and a save fails with
    ConcurrentUpdateError when the stored version is no longer the one loaded. Saves are
    staged; the unit of work applies them on commit, all or nothing.
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

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email address (case-insensitive)."""
        return self._one(lambda user: user.email.lower() == email.lower())

    async def exists(self, *, username: str, email: str) -> bool:
        """Whether the username or the email is taken."""
        return any(
            user.username.lower() == username.lower() or user.email.lower() == email.lower()
            for user in self._visible()
        )

    async def list_page(self, *, after: tuple[str, UUID] | None, limit: int) -> list[User]:
        """Users ordered by lower(username) then id, strictly after `after`; not tracked."""
        ordered = sorted(self._visible(), key=_page_key)
        if after is not None:
            ordered = [user for user in ordered if _page_key(user) > after]
        # Like the SQL repository: plain reads, not loaded for change.
        return [_copy(user) for user in ordered[:limit]]

    async def count_active_admins(self) -> int:
        """How many active admins there are."""
        return sum(
            1 for user in self._visible() if user.role == "admin" and user.status == "active"
        )

    async def pending_registrations(self, *, created_before: datetime, limit: int) -> list[User]:
        """Pending users registered before `created_before`, oldest first."""
        found = sorted(
            (u for u in self._visible() if u.status == "pending" and u.created_at < created_before),
            key=lambda u: u.created_at,
        )[:limit]
        copies = [_copy(u) for u in found]
        for user in copies:
            self.seen.append(user)
            self._loaded_versions[user.id] = user.version
        return copies

    async def save(self, user: User) -> None:
        """Stage the user's changes; ConcurrentUpdateError if another commit came first."""
        others = [row for row in self.rows.values() if row.id != user.id]
        if user.id in self._added:
            # The unique indexes decide a race between two registrations at commit time.
            self._check_free(user, others)
            self._staged[user.id] = None if user.deleted else _copy(user)
            return
        loaded = self._loaded_versions[user.id]
        if user.version == loaded:
            return
        stored = self.rows.get(user.id)
        if stored is None or stored.version != loaded:
            raise ConcurrentUpdateError()
        if not user.deleted and any(o.email.lower() == user.email.lower() for o in others):
            # The unique index on lower(email) also guards a changed address.
            raise EmailTakenError(user.email)
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


def _page_key(user: User) -> tuple[str, UUID]:
    return user.username.lower(), user.id


@dataclass(frozen=True)
class FakeSession:
    """A row of the sessions table."""

    id: UUID
    user_id: UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    client_address: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class FakeRefreshToken:
    """A row of the refresh_tokens table: only the token's digest is kept."""

    token_hash: bytes
    session_id: UUID
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class FakeResetToken:
    """A row of the password_resets table: only the token's digest is kept."""

    token_hash: bytes
    user_id: UUID
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class FakeVerificationToken:
    """A row of the email_verifications table: the token's digest and the address it was for."""

    token_hash: bytes
    user_id: UUID
    email: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass
class FakeAuthTables:
    """The committed sessions, refresh tokens and reset tokens shared by units of work."""

    sessions: dict[UUID, FakeSession] = field(default_factory=dict)
    refresh_tokens: dict[bytes, FakeRefreshToken] = field(default_factory=dict)
    password_resets: dict[bytes, FakeResetToken] = field(default_factory=dict)
    email_verifications: dict[bytes, FakeVerificationToken] = field(default_factory=dict)

    def drop_user(self, user_id: UUID) -> None:
        """What ON DELETE CASCADE does when the user's row goes."""
        ended = {sid for sid, session in self.sessions.items() if session.user_id == user_id}
        self.sessions = {sid: s for sid, s in self.sessions.items() if sid not in ended}
        self.refresh_tokens = {
            h: t for h, t in self.refresh_tokens.items() if t.session_id not in ended
        }
        self.password_resets = {
            h: t for h, t in self.password_resets.items() if t.user_id != user_id
        }
        self.email_verifications = {
            h: t for h, t in self.email_verifications.items() if t.user_id != user_id
        }

    def age(self, delta: timedelta) -> None:
        """Let `delta` pass for everything stored: every expiry comes that much closer."""
        self.sessions = {
            sid: replace(s, expires_at=s.expires_at - delta) for sid, s in self.sessions.items()
        }
        self.refresh_tokens = {
            h: replace(t, expires_at=t.expires_at - delta) for h, t in self.refresh_tokens.items()
        }
        self.password_resets = {
            h: replace(t, expires_at=t.expires_at - delta) for h, t in self.password_resets.items()
        }
        self.email_verifications = {
            h: replace(t, expires_at=t.expires_at - delta)
            for h, t in self.email_verifications.items()
        }

    def refresh_token(self, token: str) -> FakeRefreshToken | None:
        """The stored row of a refresh token."""
        return self.refresh_tokens.get(digest(token))

    def live_sessions(self, user_id: UUID) -> list[FakeSession]:
        """The user's sessions that were not revoked."""
        return [
            session
            for session in self.sessions.values()
            if session.user_id == user_id and session.revoked_at is None
        ]


class FakeSessionRepository:
    """SessionRepository over FakeAuthTables; writes are staged until commit."""

    def __init__(self, tables: FakeAuthTables) -> None:
        self._tables = tables
        self._sessions: dict[UUID, FakeSession] = {}
        self._tokens: dict[bytes, FakeRefreshToken] = {}

    async def create(
        self, user_id: UUID, *, now: datetime, ttl: timedelta, client: Client = NOWHERE
    ) -> tuple[UUID, str]:
        """A new session and its first refresh token."""
        session_id = uuid.uuid4()
        self._sessions[session_id] = FakeSession(
            id=session_id, user_id=user_id, created_at=now, last_used_at=now, expires_at=now + ttl,
            client_address=client.address, user_agent=client.user_agent,
        )  # fmt: skip
        return session_id, self._new_token(session_id, now=now, ttl=ttl)

    async def find_refresh(self, token: str) -> RefreshGrant | None:
        """The grant behind a refresh token (no locking: the fakes run one call at a time)."""
        row = self._token(digest(token))
        if row is None:
            return None
        session = self._session(row.session_id)
        assert session is not None, "a refresh token without its session"
        return RefreshGrant(
            token_hash=row.token_hash,
            session_id=session.id,
            user_id=session.user_id,
            token_used=row.used_at is not None,
            token_expires_at=row.expires_at,
            session_revoked=session.revoked_at is not None,
            session_expires_at=session.expires_at,
        )

    async def rotate(
        self, grant: RefreshGrant, *, now: datetime, ttl: timedelta, client: Client = NOWHERE
    ) -> str:
        """Spend the token and return the session's next one (the session slides on)."""
        row = self._token(grant.token_hash)
        session = self._session(grant.session_id)
        assert row is not None
        assert session is not None
        self._tokens[row.token_hash] = replace(row, used_at=now)
        self._sessions[session.id] = replace(
            session, last_used_at=now, expires_at=now + ttl,
            client_address=client.address, user_agent=client.user_agent,
        )  # fmt: skip
        return self._new_token(session.id, now=now, ttl=ttl)

    async def revoke(self, session_id: UUID, *, now: datetime, reason: str) -> None:
        """End one session (an ended or unknown one stays as it is)."""
        session = self._session(session_id)
        if session is not None and session.revoked_at is None:
            self._sessions[session_id] = replace(session, revoked_at=now, revoked_reason=reason)

    async def revoke_all(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int:
        """End every live session of the user but `keep`; how many ended."""
        ended = 0
        for session in self._all_sessions():
            if session.user_id == user_id and session.revoked_at is None and session.id != keep:
                self._sessions[session.id] = replace(session, revoked_at=now, revoked_reason=reason)
                ended += 1
        return ended

    async def is_active(self, session_id: UUID, user_id: UUID, *, now: datetime) -> bool:
        """Whether the session exists, is the user's, and is neither revoked nor expired."""
        session = self._session(session_id)
        return (
            session is not None
            and session.user_id == user_id
            and session.revoked_at is None
            and session.expires_at > now
        )

    def apply(self) -> None:
        """Write the staged rows to the shared tables (the transaction's commit)."""
        self._tables.sessions.update(self._sessions)
        self._tables.refresh_tokens.update(self._tokens)
        self._sessions.clear()
        self._tokens.clear()

    def _new_token(self, session_id: UUID, *, now: datetime, ttl: timedelta) -> str:
        token, token_hash = new_secret()
        self._tokens[token_hash] = FakeRefreshToken(
            token_hash=token_hash, session_id=session_id, created_at=now, expires_at=now + ttl
        )
        return token

    def _session(self, session_id: UUID) -> FakeSession | None:
        return self._sessions.get(session_id) or self._tables.sessions.get(session_id)

    def _token(self, token_hash: bytes) -> FakeRefreshToken | None:
        return self._tokens.get(token_hash) or self._tables.refresh_tokens.get(token_hash)

    def _all_sessions(self) -> list[FakeSession]:
        return list({**self._tables.sessions, **self._sessions}.values())


class FakeResetTokenRepository:
    """ResetTokenRepository over FakeAuthTables; writes are staged until commit."""

    def __init__(self, tables: FakeAuthTables) -> None:
        self._tables = tables
        self._rows: dict[bytes, FakeResetToken] = {}

    async def create(self, user_id: UUID, *, now: datetime, ttl: timedelta) -> str:
        """A new token for the user; earlier unused ones stop working."""
        await self.spend_all(user_id, now=now)
        token, token_hash = new_secret()
        self._rows[token_hash] = FakeResetToken(
            token_hash=token_hash, user_id=user_id, created_at=now, expires_at=now + ttl
        )
        return token

    async def find(self, token: str, *, now: datetime) -> UUID | None:
        """The user of an unused, unexpired token."""
        row = self._rows.get(digest(token)) or self._tables.password_resets.get(digest(token))
        if row is None or row.used_at is not None or row.expires_at <= now:
            return None
        return row.user_id

    async def spend_all(self, user_id: UUID, *, now: datetime) -> None:
        """Mark every unused token of the user used."""
        for row in {**self._tables.password_resets, **self._rows}.values():
            if row.user_id == user_id and row.used_at is None:
                self._rows[row.token_hash] = replace(row, used_at=now)

    def apply(self) -> None:
        """Write the staged rows to the shared table (the transaction's commit)."""
        self._tables.password_resets.update(self._rows)
        self._rows.clear()


class FakeVerificationTokenRepository:
    """VerificationTokenRepository over FakeAuthTables; writes are staged until commit."""

    def __init__(self, tables: FakeAuthTables) -> None:
        self._tables = tables
        self._rows: dict[bytes, FakeVerificationToken] = {}

    async def create(self, user_id: UUID, email: str, *, now: datetime, ttl: timedelta) -> str:
        """A new token for the user's `email`; earlier unused ones stop working."""
        await self.spend_all(user_id, now=now)
        token, token_hash = new_secret()
        self._rows[token_hash] = FakeVerificationToken(
            token_hash=token_hash, user_id=user_id, email=email, created_at=now,
            expires_at=now + ttl,
        )  # fmt: skip
        return token

    async def find(self, token: str, *, now: datetime) -> VerificationGrant | None:
        """The grant of an unused, unexpired token."""
        key = digest(token)
        row = self._rows.get(key) or self._tables.email_verifications.get(key)
        if row is None or row.used_at is not None or row.expires_at <= now:
            return None
        return VerificationGrant(user_id=row.user_id, email=row.email)

    async def spend_all(self, user_id: UUID, *, now: datetime) -> None:
        """Mark every unused token of the user used."""
        for row in {**self._tables.email_verifications, **self._rows}.values():
            if row.user_id == user_id and row.used_at is None:
                self._rows[row.token_hash] = replace(row, used_at=now)

    def apply(self) -> None:
        """Write the staged rows to the shared table (the transaction's commit)."""
        self._tables.email_verifications.update(self._rows)
        self._rows.clear()


class FakeUnitOfWork:
    """UnitOfWork in memory: commit saves the seen users and appends their events to `outbox`.

    Sessions and reset tokens are written with the users, and a deleted user's go with it (as
    ON DELETE CASCADE does). Leaving without commit drops every change and publishes nothing,
    like a rollback.
    """

    def __init__(
        self,
        rows: dict[UUID, User] | None = None,
        outbox: list[tuple[int, Event]] | None = None,
        tables: FakeAuthTables | None = None,
    ) -> None:
        self.rows: dict[UUID, User] = {} if rows is None else rows
        self.outbox: list[tuple[int, Event]] = [] if outbox is None else outbox
        self.tables = FakeAuthTables() if tables is None else tables
        self.committed = False
        self._users: FakeUserRepository | None = None
        self._sessions: FakeSessionRepository | None = None
        self._password_resets: FakeResetTokenRepository | None = None
        self._email_verifications: FakeVerificationTokenRepository | None = None

    @property
    def users(self) -> FakeUserRepository:
        """The users of this unit of work (only inside `async with`)."""
        assert self._users is not None, "use the unit of work inside `async with`"
        return self._users

    @property
    def sessions(self) -> FakeSessionRepository:
        """The login sessions of this unit of work (only inside `async with`)."""
        assert self._sessions is not None, "use the unit of work inside `async with`"
        return self._sessions

    @property
    def password_resets(self) -> FakeResetTokenRepository:
        """The password reset tokens of this unit of work (only inside `async with`)."""
        assert self._password_resets is not None, "use the unit of work inside `async with`"
        return self._password_resets

    @property
    def email_verifications(self) -> FakeVerificationTokenRepository:
        """The email verification tokens of this unit of work (only inside `async with`)."""
        assert self._email_verifications is not None, "use the unit of work inside `async with`"
        return self._email_verifications

    async def __aenter__(self) -> Self:
        self._users = FakeUserRepository(self.rows)
        self._sessions = FakeSessionRepository(self.tables)
        self._password_resets = FakeResetTokenRepository(self.tables)
        self._email_verifications = FakeVerificationTokenRepository(self.tables)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._users = self._sessions = self._password_resets = None
        self._email_verifications = None

    async def commit(self) -> None:
        """Save changed users, sessions and tokens, and append the events, all or nothing."""
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
        self.sessions.apply()
        self.password_resets.apply()
        self.email_verifications.apply()
        for user in users.seen:
            if user.deleted:
                self.tables.drop_user(user.id)
        self.outbox.extend(recorded)
        for user in users.seen:
            user.events.clear()
        self.committed = True


class FakeUnitOfWorkFactory:
    """A `uow_factory`: every unit of work it makes shares one store and one outbox."""

    def __init__(self) -> None:
        self.rows: dict[UUID, User] = {}
        self.outbox: list[tuple[int, Event]] = []
        self.tables = FakeAuthTables()
        self.units: list[FakeUnitOfWork] = []

    def __call__(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.rows, self.outbox, self.tables)
        self.units.append(uow)
        return uow

    @property
    def committed(self) -> bool:
        """Whether any unit of work made here committed."""
        return any(uow.committed for uow in self.units)

    def events(self) -> list[Event]:
        """The events in the outbox, without their sequences."""
        return [event for _, event in self.outbox]


class FakePrincipalStore:
    """PrincipalStore over a FakeUnitOfWorkFactory's committed users and sessions."""

    def __init__(self, factory: FakeUnitOfWorkFactory) -> None:
        self._factory = factory

    async def standing(
        self, user_id: UUID, session_id: UUID | None, *, now: datetime
    ) -> Standing | None:
        """The committed user, and whether the session is theirs, unrevoked and unexpired."""
        user = self._factory.rows.get(user_id)
        if user is None:
            return None
        session = self._factory.tables.sessions.get(session_id) if session_id else None
        live = (
            session is not None
            and session.user_id == user_id
            and session.revoked_at is None
            and session.expires_at > now
        )
        return Standing(user=_copy(user), session_live=live)


class FakeLoginRateLimiter:
    """LoginRateLimiter counting failures in dicts: per casefolded username and per address.

    No clock: once a count reaches its limit, `retry_after` says `wait_seconds` until a
    success (usernames) or the test resets it.
    """

    def __init__(
        self, *, per_username: int = 5, per_address: int = 50, wait_seconds: int = 900
    ) -> None:
        self.per_username = per_username
        self.per_address = per_address
        self.wait_seconds = wait_seconds
        self.username_failures: dict[str, int] = {}
        self.address_failures: dict[str, int] = {}

    async def retry_after(self, username: str, address: str | None) -> int | None:
        """`wait_seconds` while the username or the address is at its limit, else None."""
        return self.wait_seconds if self._at_limit(username, address) else None

    async def record_failure(self, username: str, address: str | None) -> int | None:
        """Count a failure; `wait_seconds` if that reached a limit, else None."""
        name = username.casefold()
        self.username_failures[name] = self.username_failures.get(name, 0) + 1
        if address is not None:
            self.address_failures[address] = self.address_failures.get(address, 0) + 1
        return self.wait_seconds if self._at_limit(username, address) else None

    async def record_success(self, username: str) -> None:
        """Forget the username's failures (the address keeps its count)."""
        self.username_failures.pop(username.casefold(), None)

    def lock(self, username: str) -> None:
        """Put the username at its limit, as if it had failed that often."""
        self.username_failures[username.casefold()] = self.per_username

    def _at_limit(self, username: str, address: str | None) -> bool:
        by_name = self.username_failures.get(username.casefold(), 0) >= self.per_username
        by_address = (
            address is not None and self.address_failures.get(address, 0) >= self.per_address
        )
        return by_name or by_address


class FakeMailer:
    """Mailer that keeps every message it is given."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        """Keep `message`."""
        self.sent.append(message)


class CapturedAudit(logging.Handler):
    """A log handler that keeps the audit log's records, and reads their JSON back."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)

    def audit_log(self) -> AuditLog:
        """A real AuditLog writing to a private logger that only this handler hears."""
        # Not from logging.getLogger: a logger outside the registry leaks into no other test.
        logger = logging.Logger(f"userbus.audit.test-{uuid.uuid4().hex[:8]}", logging.DEBUG)
        logger.propagate = False
        logger.addHandler(self)
        return AuditLog(logger)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        """Every audit line as a dict, or only those of `event`."""
        parsed = [json.loads(record.getMessage()) for record in self.records]
        return [line for line in parsed if event is None or line["event"] == event]

    def events(self) -> list[str]:
        """The name of each audit line, in order."""
        return [line["event"] for line in self.lines()]

    def text(self) -> str:
        """Everything written, for checking what must never be there."""
        return "\n".join(record.getMessage() for record in self.records)


def make_token_service(**changes: Any) -> TokenService:
    """A real TokenService on a freshly generated Ed25519 key."""
    options: dict[str, Any] = {
        "algorithm": "EdDSA",
        "issuer": TOKEN_ISSUER,
        "audience": TOKEN_AUDIENCE,
        "ttl": ACCESS_TOKEN_TTL,
    }
    options.update(changes)
    return TokenService(ed25519.Ed25519PrivateKey.generate(), **options)


def make_context(
    uow_factory: FakeUnitOfWorkFactory | None = None,
    *,
    hasher: FakePasswordHasher | None = None,
    limiter: FakeLoginRateLimiter | None = None,
    mailer: FakeMailer | None = None,
    audit: CapturedAudit | None = None,
    tokens: TokenService | None = None,
    lifetimes: Lifetimes | None = None,
    password_reset_url: str | None = None,
    require_profile: bool = False,
    mail_limiter: MailRateLimiter | None = None,
    require_verified_email: bool = False,
) -> AuthContext:
    """An AuthContext of fakes, a real TokenService and a real AuditLog; pass what you inspect."""
    factory = uow_factory or FakeUnitOfWorkFactory()
    return AuthContext(
        uow_factory=factory,
        principals=FakePrincipalStore(factory),
        hasher=hasher or FakePasswordHasher(),
        tokens=tokens or make_token_service(),
        limiter=limiter or FakeLoginRateLimiter(),
        mailer=mailer or FakeMailer(),
        audit=(audit or CapturedAudit()).audit_log(),
        lifetimes=lifetimes or Lifetimes(),
        password_reset_url=password_reset_url,
        require_profile=require_profile,
        mail_limiter=mail_limiter,
        require_verified_email=require_verified_email,
    )
