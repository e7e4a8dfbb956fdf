"""The bearer check's database work, done seven ways: CPU and wall time per check, in-process."""

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
from _common import make_parser, scratch, setup_process, show_load, show_text
from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auth.adapters.orm import sessions, users
from auth.adapters.principals import AsyncpgPrincipalStore
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork
from infra.settings import sqlalchemy_url

# The single-user form of the store's statement, for the plain asyncpg ways.
ONE_SQL = """
SELECT u.*, EXISTS (
    SELECT 1 FROM auth.sessions s WHERE s.id = $2 AND s.user_id = u.id
    AND s.revoked_at IS NULL AND s.expires_at > $3) AS session_live
FROM auth.users u WHERE u.id = $1
"""
Check = Callable[[], Awaitable[None]]


async def seed(database_url: str) -> tuple[UUID, UUID]:
    """One active user with one live session."""
    user_id, session_id, now = uuid4(), uuid4(), datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO auth.users VALUES ($1, 'bench', 'bench@example.com', 'h', 'user',"
            " 'active', NULL, $2, $2, 1)",
            user_id, now,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO auth.sessions (id, user_id, created_at, last_used_at, expires_at)"
            " VALUES ($1, $2, $3, $3, $4)",
            session_id, user_id, now, now + timedelta(days=1),
        )  # fmt: skip
    finally:
        await conn.close()
    return user_id, session_id


def unit_of_work(engine: AsyncEngine, user_id: UUID, session_id: UUID) -> Check:
    """The previous check: a unit of work (BEGIN, two SELECTs, ROLLBACK) on the ping engine."""

    async def check() -> None:
        async with SqlAlchemyUnitOfWork(engine, event_source="/bench") as uow:
            assert await uow.users.get(user_id) is not None
            assert await uow.sessions.is_active(session_id, user_id, now=datetime.now(UTC))

    return check


def core(engine: AsyncEngine, user_id: UUID, session_id: UUID) -> Check:
    """One SQLAlchemy Core statement (cached compilation), autocommit: no BEGIN, no ROLLBACK."""
    live = exists().where(
        sessions.c.id == bindparam("sid"),
        sessions.c.user_id == users.c.id,
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > bindparam("now"),
    )
    statement = select(users, live.label("session_live")).where(users.c.id == bindparam("uid"))

    async def check() -> None:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            values = {"uid": user_id, "sid": session_id, "now": datetime.now(UTC)}
            assert (await conn.execute(statement, values)).one().session_live

    return check


def plain_pool(pool: asyncpg.Pool, user_id: UUID, session_id: UUID) -> Check:
    """One prepared statement on an asyncpg pool."""

    async def check() -> None:
        assert (await pool.fetchrow(ONE_SQL, user_id, session_id, datetime.now(UTC)))[-1]

    return check


def store(principals: AsyncpgPrincipalStore, user_id: UUID, session_id: UUID, n: int) -> Check:
    """AsyncpgPrincipalStore with `n` questions in the same turn (the cost is per question)."""

    async def check() -> None:
        now = datetime.now(UTC)
        if n == 1:
            alone = await principals.standing(user_id, session_id, now=now)
            assert alone is not None
            assert alone.session_live
            return
        answers = await asyncio.gather(
            *(principals.standing(user_id, uuid4() if i else session_id, now=now) for i in range(n))
        )
        assert answers[0] is not None
        assert answers[0].session_live

    return check


async def measure(label: str, check: Check, count: int, per_call: int = 1) -> None:
    """Print the CPU and wall time of one check (a call answers `per_call` of them)."""
    for _ in range(max(20, count // 10)):
        await check()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await check()
    checks = count * per_call
    cpu_us = (time.process_time() - cpu) / checks * 1e6
    wall_us = (time.perf_counter() - wall) / checks * 1e6
    show_text(label, f"CPU {cpu_us:7.1f} us, wall {wall_us:7.1f} us per check")


async def main(args: argparse.Namespace) -> None:
    """Each way in turn, `--repeats` times."""
    show_load("at start")
    async with scratch(args) as space:
        user_id, session_id = await seed(space.database_url)
        url = sqlalchemy_url(space.database_url)
        pinged = create_async_engine(url, pool_size=10, pool_pre_ping=True)
        unpinged = create_async_engine(url, pool_size=10)

        async def no_reset(connection: asyncpg.Connection) -> None:
            """Release without asyncpg's reset query."""

        reset_pool = await asyncpg.create_pool(space.database_url, min_size=1, max_size=10)
        kept_pool = await asyncpg.create_pool(
            space.database_url, min_size=1, max_size=10, reset=no_reset
        )
        principals = AsyncpgPrincipalStore(space.database_url, max_size=10)
        ids = (user_id, session_id)
        ways: list[tuple[str, Check, int]] = [
            ("unit of work, 2 SELECTs (before)", unit_of_work(pinged, *ids), 1),
            ("Core, 1 statement, ping engine", core(pinged, *ids), 1),
            ("Core, 1 statement, no ping", core(unpinged, *ids), 1),
            ("asyncpg pool, 1 statement, reset", plain_pool(reset_pool, *ids), 1),
            ("asyncpg pool, 1 statement, no reset", plain_pool(kept_pool, *ids), 1),
            ("the store, 1 question a turn", store(principals, *ids, 1), 1),
            ("the store, 32 questions a turn", store(principals, *ids, 32), 32),
        ]
        try:
            for _ in range(args.repeats):
                for label, check, per_call in ways:
                    await measure(label, check, args.count // per_call, per_call)
        finally:
            await principals.close()
            await reset_pool.close()
            await kept_pool.close()
            await pinged.dispose()
            await unpinged.dispose()
    show_load("at end")


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--count", type=int, default=3000, help="checks per way (default: 3000)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all ways (default: 2)")
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
