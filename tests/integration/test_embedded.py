"""The embedded servers of `userbus dev` start, stop, and survive a crashed run."""

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import server_processes
from userbus.embedded import EmbeddedPostgres, EmbeddedServers, EmbeddedValkey

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Starts the servers, writes one row and one stream entry, reports, then waits to be killed.
CRASHING_RUN = """
import asyncio, sys, time
from pathlib import Path
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import server_processes
from userbus.embedded import EmbeddedServers

data_dir, marker = Path(sys.argv[1]), sys.argv[2]
urls = EmbeddedServers(data_dir).start()

async def write() -> None:
    engine = create_async_engine(urls.database_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS notes (body text)"))
        await conn.execute(text("INSERT INTO notes VALUES (:b)"), {"b": marker})
    await engine.dispose()

asyncio.run(write())
redis.Redis.from_url(urls.redis_url).xadd("events", {"body": marker})
print(urls.redis_url, flush=True)
time.sleep(600)
"""


async def notes(database_url: str) -> list[str]:
    """Return the bodies stored in the `notes` table."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT body FROM notes"))).scalars())
    finally:
        await engine.dispose()


async def select_one(database_url: str) -> int:
    """Run `SELECT 1` through SQLAlchemy's asyncpg dialect."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())
    finally:
        await engine.dispose()


def test_servers_answer_queries_and_leave_nothing_running(data_dir: Path) -> None:
    servers = EmbeddedServers(data_dir)
    with servers as urls:
        assert urls.database_url.startswith("postgresql+asyncpg://postgres@/userbus?")
        assert asyncio.run(select_one(urls.database_url)) == 1
        assert redis.Redis.from_url(urls.redis_url).ping()
        assert server_processes(data_dir)
    servers.stop()  # idempotent
    assert server_processes(data_dir) == []


def test_restart_after_sigkill_is_fast_and_keeps_data(data_dir: Path) -> None:
    marker = uuid.uuid4().hex
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, str(data_dir), marker],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    ready, _, _ = select.select([child.stdout], [], [], 60)
    first_redis_url = child.stdout.readline().strip() if ready else ""
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert first_redis_url, child.stderr.read()
    assert server_processes(data_dir), "the crash should leave orphaned servers"

    servers = EmbeddedServers(data_dir)
    started = time.monotonic()
    urls = servers.start()
    try:
        assert time.monotonic() - started < 5
        assert urls.redis_url == first_redis_url  # the port is stable
        assert marker in asyncio.run(notes(urls.database_url))
        entries = redis.Redis.from_url(urls.redis_url).xrange("events")
        assert entries is not None
        assert {b"body": marker.encode()} in [fields for _, fields in entries]
    finally:
        servers.stop()
    assert server_processes(data_dir) == []


def test_postgres_starts_when_its_pid_file_names_another_program(
    data_dir: Path,
) -> None:
    postgres = EmbeddedPostgres(data_dir / "postgres")
    postgres.start()
    pid_file = data_dir / "postgres" / "postmaster.pid"
    lines = pid_file.read_text().splitlines(keepends=True)
    postgres.stop()
    # As after a reboot: the pid in the stale file now belongs to someone else.
    pid_file.write_text(f"{os.getpid()}\n" + "".join(lines[1:]))

    url = postgres.start()
    try:
        assert asyncio.run(select_one(url)) == 1
    finally:
        postgres.stop()


def test_valkey_leaves_alone_a_pid_file_naming_another_program(data_dir: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    valkey = EmbeddedValkey(data_dir / "valkey")
    valkey.pid_file.parent.mkdir(parents=True)
    valkey.pid_file.write_text(str(bystander.pid))
    try:
        assert redis.Redis.from_url(valkey.start()).ping()
        assert bystander.poll() is None
    finally:
        valkey.stop()
        bystander.kill()
        bystander.wait()
