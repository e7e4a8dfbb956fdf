"""A replay while the projection is live: readers never wait long, nothing is lost or doubled."""

import asyncio
import time
from uuid import UUID

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import ProjectionApplier
from consumers.replay import replay
from consumers.replay.sources import LogSource
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope
from infra.event_log import LogPage, PostgresEventLog
from infra.settings import asyncpg_dsn, sqlalchemy_url
from tests.integration.helpers import eventually
from tests.integration.history import (
    expected_profiles,
    make_history,
    positions,
    seed_outbox,
    table_rows,
)
from tests.integration.readers import ReaderProcess

pytestmark = pytest.mark.integration

LONGEST_READ = 0.2


async def live_profiles(
    engine: AsyncEngine,
) -> tuple[dict[UUID, dict[str, object]], dict[UUID, int]]:
    """The live profile table by user, and its tracking records."""
    async with engine.connect() as conn:
        rows = await table_rows(conn, "profiles", "profiles", "user_id")
        return {row["user_id"]: row for row in rows}, await positions(conn, "profiles")


async def leftover_schemas(engine: AsyncEngine) -> list[str]:
    """Schemas a replay of profiles made and should have dropped."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'profiles\\_\\_%'")
        )
        return list(found.scalars())


async def test_readers_never_wait_during_a_replay_of_200000_events_and_it_equals_the_live_view(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(205_000)
    early, late = history[:200_000], history[200_000:]
    await seed_outbox(isolated_database_url, early)
    log_url = sqlalchemy_url(isolated_database_url)
    await replay(ProfileProjection(), engine, OutboxLogSource(log_url))  # the live view
    built, _ = await live_profiles(engine)
    assert built == expected_profiles(early)[0]

    reader = ReaderProcess(isolated_database_url, list(built)[:1000])
    reader.start()
    live = ProjectionApplier(ProfileProjection())
    applied_at: list[float] = []

    async def live_consumer() -> None:
        # New events keep coming and the live projection applies them (the normal path).
        for start in range(0, len(late), 250):
            chunk = late[start : start + 250]
            await seed_outbox(isolated_database_url, chunk)
            async with engine.begin() as conn:
                await live.apply_batch(conn, chunk)
            applied_at.append(time.monotonic())
            await asyncio.sleep(0.2)

    began = time.monotonic()
    consumer = asyncio.create_task(live_consumer())
    try:
        outcome = await replay(ProfileProjection(), engine, OutboxLogSource(log_url))
        ended = time.monotonic()
        await consumer
    finally:
        waits = reader.finish()
    assert len(waits) > 20
    assert max(waits) < LONGEST_READ, sorted(waits)[-5:]
    assert outcome.swap.exclusive_seconds < LONGEST_READ
    assert any(began < moment < ended for moment in applied_at)  # applied during the replay

    rows, tracked = await live_profiles(engine)
    expected_rows, expected_tracked = expected_profiles(history)
    assert rows == expected_rows
    assert tracked == expected_tracked
    assert await leftover_schemas(engine) == []


class LaggingLog(PostgresEventLog):
    """A log whose pages stop at a position, as a feed behind a cache or a long writer would."""

    def __init__(self, database_url: str, stop_at: int) -> None:
        super().__init__(database_url)
        self._stop_at = stop_at

    async def head(self) -> int:
        return min(await super().head(), self._stop_at)

    async def page(self, after: int, limit: int) -> LogPage:
        found = await super().page(after, limit)
        rows = [
            (position, payload) for position, payload in found.rows if position <= self._stop_at
        ]
        if len(rows) < len(found.rows) or found.next >= self._stop_at:
            return LogPage(rows, max(after, self._stop_at), caught_up=True)
        return found


async def test_the_swap_takes_from_the_log_what_the_live_view_applied_beyond_the_shadow(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(3_000)
    await seed_outbox(isolated_database_url, history)
    async with engine.begin() as conn:
        live = ProjectionApplier(ProfileProjection())
        await live.setup(conn)
        await live.apply_batch(conn, history)

    # The pages stop halfway; the live view applied everything: the swap catches up.
    source = LogSource(LaggingLog(isolated_database_url, stop_at=1_500))
    outcome = await replay(ProfileProjection(), engine, source, batch_size=500)

    assert outcome.swap.caught_up_users > 0
    rows, tracked = await live_profiles(engine)
    expected_rows, expected_tracked = expected_profiles(history)
    assert rows == expected_rows
    assert tracked == expected_tracked


async def test_a_long_read_delays_the_swap_but_never_the_other_readers(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history: list[Envelope] = make_history(2_000)
    await seed_outbox(isolated_database_url, history)
    log_url = sqlalchemy_url(isolated_database_url)
    await replay(ProfileProjection(), engine, OutboxLogSource(log_url))
    built, _ = await live_profiles(engine)
    reader = ReaderProcess(isolated_database_url, list(built))
    reader.start()
    holder = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        # A report reads the table in a long transaction; it ends a while after the swap
        # first asked for the table.
        await holder.execute("BEGIN; SELECT count(*) FROM profiles.profiles")

        async def end_the_report() -> None:
            watcher = await asyncpg.connect(asyncpg_dsn(isolated_database_url))

            async def swap_waits() -> bool:
                return bool(
                    await watcher.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() "
                        "AND query LIKE 'LOCK TABLE%ACCESS EXCLUSIVE%'"
                    )
                )

            try:
                await eventually(swap_waits, timeout=120, interval=0.005)
            finally:
                await watcher.close()
            await asyncio.sleep(0.5)
            await holder.execute("COMMIT")

        report = asyncio.create_task(end_the_report())
        outcome = await replay(ProfileProjection(), engine, OutboxLogSource(log_url))
        await report
    finally:
        waits = reader.finish()
        await holder.close()
    assert outcome.swap.attempts > 1
    assert max(waits) < LONGEST_READ, sorted(waits)[-5:]
    rows, _ = await live_profiles(engine)
    assert rows == expected_profiles(history)[0]
