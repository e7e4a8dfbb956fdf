"""The backends each port contract runs on: the fakes of tests/unit, and the real adapters."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from auth.adapters.orm import outbox
from auth.domain.model import Role, User
from auth.service_layer.context import UnitOfWorkFactory
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork
from infra.settings import sqlalchemy_url
from tests.conftest import unique_username
from tests.unit.fakes import FakeUnitOfWorkFactory

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(days=30)


@dataclass(frozen=True)
class Store:
    """Units of work on one backend, and a look at what its outbox holds."""

    uow_factory: UnitOfWorkFactory
    # (sequence, type) of each outbox row about the user, in sequence order.
    outbox_of: Callable[[UUID], Awaitable[list[tuple[int, str]]]]


@pytest.fixture
def fake_store() -> Store:
    """Units of work of fakes sharing one in-memory store."""
    factory = FakeUnitOfWorkFactory()

    async def outbox_of(user_id: UUID) -> list[tuple[int, str]]:
        rows = [(s, e.type_name()) for s, e in factory.outbox if e.user_id == user_id]
        return sorted(rows)

    return Store(uow_factory=factory, outbox_of=outbox_of)


@pytest.fixture
async def sql_store(isolated_database_url: str) -> AsyncIterator[Store]:
    """SqlAlchemyUnitOfWork on a migrated database of this test alone (empty at first)."""
    engine = create_async_engine(sqlalchemy_url(isolated_database_url))

    async def outbox_of(user_id: UUID) -> list[tuple[int, str]]:
        query = (
            select(outbox.c.sequence, outbox.c.type)
            .where(outbox.c.subject == user_id)
            .order_by(outbox.c.sequence)
        )
        async with engine.connect() as conn:
            return [(row.sequence, row.type) for row in await conn.execute(query)]

    yield Store(
        uow_factory=lambda: SqlAlchemyUnitOfWork(engine, event_source="/userbus/contract"),
        outbox_of=outbox_of,
    )
    await engine.dispose()


def new_user(username: str | None = None, *, role: Role = "user", pending: bool = False) -> User:
    """A registered, not yet stored user (a unique name unless one is given)."""
    name = username or unique_username()
    return User.register(
        username=name,
        email=f"{name.lower()}@example.com",
        password_hash="fake$pw",
        now=NOW,
        role=role,
        pending=pending,
    )


async def stored(store: Store, user: User | None = None) -> User:
    """`user` (or a new one) added and committed."""
    user = user or new_user()
    async with store.uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user
