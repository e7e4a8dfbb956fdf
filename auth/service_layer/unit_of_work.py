"""The unit of work: the one place where state changes and their events leave together."""

from types import TracebackType
from typing import Protocol, Self

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from auth.adapters.mfa import MfaRepository, SqlAlchemyMfaRepository
from auth.adapters.orm import outbox
from auth.adapters.repository import SqlAlchemyUserRepository, UserRepository
from auth.adapters.reset_tokens import ResetTokenRepository, SqlAlchemyResetTokenRepository
from auth.adapters.sessions import SessionRepository, SqlAlchemySessionRepository
from auth.adapters.verification_tokens import (
    SqlAlchemyVerificationTokenRepository,
    VerificationTokenRepository,
)
from consumers.replay.stamp import stamp
from events import to_envelope
from infra.observability.trace_context import current_trace
from producers.outbox import outbox_row


class UnitOfWork(Protocol):
    """A transaction over users; `commit` writes every recorded event to the outbox with it."""

    @property
    def users(self) -> UserRepository:
        """The users of this transaction."""
        ...

    @property
    def sessions(self) -> SessionRepository:
        """The login sessions of this transaction."""
        ...

    @property
    def password_resets(self) -> ResetTokenRepository:
        """The password reset tokens of this transaction."""
        ...

    @property
    def email_verifications(self) -> VerificationTokenRepository:
        """The email verification tokens of this transaction."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Save changed users and their events atomically."""
        ...


class MfaUnitOfWork(UnitOfWork, Protocol):
    """A unit of work that also reaches the second factor's tables (the MFA use cases')."""

    @property
    def mfa(self) -> MfaRepository:
        """TOTP enrolments and recovery codes of this transaction."""
        ...


class SqlAlchemyUnitOfWork:
    """UnitOfWork on PostgreSQL: users and outbox rows in one transaction (the outbox pattern)."""

    def __init__(self, engine: AsyncEngine | None, *, event_source: str) -> None:
        self._engine = engine
        self._event_source = event_source
        self._conn: AsyncConnection | None = None
        self._users: SqlAlchemyUserRepository | None = None
        self._sessions: SqlAlchemySessionRepository | None = None
        self._password_resets: SqlAlchemyResetTokenRepository | None = None
        self._email_verifications: SqlAlchemyVerificationTokenRepository | None = None

    @property
    def users(self) -> SqlAlchemyUserRepository:
        """The users of this transaction (only inside `async with`)."""
        assert self._users is not None, "use the unit of work inside `async with`"
        return self._users

    @property
    def sessions(self) -> SqlAlchemySessionRepository:
        """The login sessions of this transaction (only inside `async with`)."""
        assert self._sessions is not None, "use the unit of work inside `async with`"
        return self._sessions

    @property
    def password_resets(self) -> SqlAlchemyResetTokenRepository:
        """The password reset tokens of this transaction (only inside `async with`)."""
        assert self._password_resets is not None, "use the unit of work inside `async with`"
        return self._password_resets

    @property
    def mfa(self) -> SqlAlchemyMfaRepository:
        """TOTP enrolments and recovery codes of this transaction (only inside `async with`)."""
        assert self._conn is not None, "use the unit of work inside `async with`"
        return SqlAlchemyMfaRepository(self._conn)

    @property
    def email_verifications(self) -> SqlAlchemyVerificationTokenRepository:
        """The email verification tokens of this transaction (only inside `async with`)."""
        assert self._email_verifications is not None, "use the unit of work inside `async with`"
        return self._email_verifications

    async def __aenter__(self) -> Self:
        self._conn = await self._begin()
        self._users = SqlAlchemyUserRepository(self._conn)
        self._sessions = SqlAlchemySessionRepository(self._conn)
        self._password_resets = SqlAlchemyResetTokenRepository(self._conn)
        self._email_verifications = SqlAlchemyVerificationTokenRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        await self._end(self._conn)
        self._conn = None
        self._users = self._sessions = self._password_resets = None
        self._email_verifications = None

    async def commit(self) -> None:
        """Save changed users, append their events to the outbox, then commit both."""
        assert self._conn is not None
        rows = []
        # The request's trace context, if one came: its events join the request's trace.
        trace = current_trace.get()
        parent, state = (trace.traceparent, trace.tracestate) if trace else (None, None)
        for user in self.users.seen:
            await self.users.save(user)
            for sequence, event in user.events:
                envelope = to_envelope(
                    event,
                    sequence=sequence,
                    source=self._event_source,
                    traceparent=parent,
                    tracestate=state,
                )
                # Stamped: a replay need not check its payload again.
                rows.append(outbox_row(envelope, stamp))
            user.events.clear()
        if rows:
            await self._conn.execute(insert(outbox), rows)
        await self._finish(self._conn)

    async def _begin(self) -> AsyncConnection:
        assert self._engine is not None
        conn = await self._engine.connect()
        await conn.begin()
        return conn

    async def _finish(self, conn: AsyncConnection) -> None:
        await conn.commit()

    async def _end(self, conn: AsyncConnection) -> None:
        # Anything not committed is rolled back: no state change and, with it, no event.
        await conn.close()


class JoinedUnitOfWork(SqlAlchemyUnitOfWork):
    """A unit of work inside a transaction someone else owns (a consumer's batch).

    The registration saga applies the profile service's answers in the consumer toolkit's
    transaction, so the user's change, its outbox rows and the tracking record of the answer
    commit together: `commit` writes users and outbox rows but leaves committing (or rolling
    back) to the owner of the connection.
    """

    def __init__(self, conn: AsyncConnection, *, event_source: str) -> None:
        super().__init__(None, event_source=event_source)
        self._joined = conn

    async def _begin(self) -> AsyncConnection:
        return self._joined

    async def _finish(self, conn: AsyncConnection) -> None:
        """The owner commits."""

    async def _end(self, conn: AsyncConnection) -> None:
        """The owner closes; an error raised inside rolls back its whole transaction."""
