"""An interrupted replay: `--resume` goes on from its checkpoint; without it, it starts over."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay import ReplayError, replay
from consumers.replay.sources import ReplaySource, SourcePage, StreamSource
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope
from infra.brokers import broker_for
from infra.settings import sqlalchemy_url
from tests.integration.helpers import eventually
from tests.integration.history import (
    expected_profiles,
    make_history,
    positions,
    seed_outbox,
    table_rows,
)

pytestmark = pytest.mark.integration


def replay_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `userbus replay` of this test's database, and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERBUS_")}
    return env | {"USERBUS_DATABASE_URL": database_url} | extra


async def run_userbus(args: Sequence[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the userbus command to its end; its exit code and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "userbus", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    return process.returncode or 0, output.decode()


async def checkpoint(engine: AsyncEngine) -> tuple[str, int] | None:
    """The shadow's checkpoint (position, events), if a replay left one."""
    async with engine.connect() as conn:
        if not await conn.scalar(text("SELECT to_regclass('profiles__replay.replay_checkpoint')")):
            return None
        row = (
            await conn.execute(
                text("SELECT position, events FROM profiles__replay.replay_checkpoint")
            )
        ).one()
        return row.position, row.events


async def assert_profiles_equal(engine: AsyncEngine, history: Sequence[Envelope]) -> None:
    """The live profile table and its tracking are what the history gives."""
    rows, tracked = expected_profiles(history)
    async with engine.connect() as conn:
        found = await table_rows(conn, "profiles", "profiles", "user_id")
        assert {row["user_id"]: row for row in found} == rows
        assert await positions(conn, "profiles") == tracked


async def test_a_replay_killed_halfway_resumes_from_its_checkpoint(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(40_000)
    await seed_outbox(isolated_database_url, history)
    env = replay_env(isolated_database_url, USERBUS_REPLAY_BATCH_SIZE="200")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "userbus", "replay", "profiles",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    async def halfway() -> bool:
        found = await checkpoint(engine)
        return found is not None and found[1] >= 10_000

    try:
        await eventually(halfway, timeout=300, interval=0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    stopped = await checkpoint(engine)
    assert stopped is not None
    assert 0 < stopped[1] < len(history)

    code, output = await run_userbus(["replay", "profiles", "--resume"], env)

    assert code == 0, output
    assert "(resumed at " in output
    assert "(in-database build)" in output  # the log is in the projection's database
    resumed_at = int(output.split("(resumed at ", 1)[1].split(")", 1)[0])
    assert resumed_at >= int(stopped[0])  # went on, never back to the start
    await assert_profiles_equal(engine, history)
    assert await checkpoint(engine) is None


class CrashError(Exception):
    """The test's stand-in for a crash."""


class FailingAfter:
    """A source that fails after `pages` pages, as a replay killed by a crash would stop."""

    def __init__(self, inner: ReplaySource, pages: int) -> None:
        self._inner, self._left = inner, pages
        self.kind = inner.kind

    async def total(self) -> int | None:
        return await self._inner.total()

    def progress_at(self, position: str, events: int) -> int:
        return self._inner.progress_at(position, events)

    def resume_from(self, position: str) -> str:
        return self._inner.resume_from(position)

    async def pages(self, after: str, size: int) -> AsyncIterator[SourcePage]:
        async for page in self._inner.pages(after, size):
            if self._left == 0:
                raise CrashError()
            self._left -= 1
            yield page

    async def events_of(self, user_id: UUID, after_sequence: int) -> list[Envelope] | None:
        return await self._inner.events_of(user_id, after_sequence)

    async def close(self) -> None:
        await self._inner.close()


async def test_without_resume_a_leftover_shadow_is_dropped_and_the_replay_starts_over(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(3_000)
    await seed_outbox(isolated_database_url, history)
    url = sqlalchemy_url(isolated_database_url)
    with pytest.raises(CrashError):
        await replay(
            ProfileProjection(), engine, FailingAfter(OutboxLogSource(url), 2), batch_size=500
        )
    assert await checkpoint(engine) is not None

    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url), batch_size=500)

    assert outcome.resumed_at == ""
    assert outcome.events.applied + outcome.events.skipped == len(history)
    await assert_profiles_equal(engine, history)


async def test_a_replay_resumes_only_from_the_same_kind_of_source(
    isolated_database_url: str, engine: AsyncEngine, redis_url: str, stream: str
) -> None:
    history = make_history(2_000)
    await seed_outbox(isolated_database_url, history)
    url = sqlalchemy_url(isolated_database_url)
    with pytest.raises(CrashError):
        await replay(
            ProfileProjection(), engine, FailingAfter(OutboxLogSource(url), 1), batch_size=500
        )
    broker = broker_for(redis_url)

    with pytest.raises(ReplayError, match="--source log"):
        await replay(ProfileProjection(), engine, StreamSource(broker.history(stream)), resume=True)

    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url), resume=True)
    assert outcome.resumed_at == "500"
    await assert_profiles_equal(engine, history)


async def test_the_command_says_why_it_cannot_resume(
    isolated_database_url: str, engine: AsyncEngine, redis_url: str, stream: str
) -> None:
    history = make_history(1_000)
    await seed_outbox(isolated_database_url, history)
    url = sqlalchemy_url(isolated_database_url)
    with pytest.raises(CrashError):
        await replay(
            ProfileProjection(), engine, FailingAfter(OutboxLogSource(url), 1), batch_size=200
        )
    env = replay_env(isolated_database_url, USERBUS_BROKER_URL=redis_url, USERBUS_STREAM=stream)

    code, output = await run_userbus(["replay", "profiles", "--source", "stream", "--resume"], env)

    assert code == 1
    assert "read from the log; resume it with --source log" in output
    assert "Traceback" not in output
