"""`userbus dev` as a user runs it: embedded servers, one command, Ctrl-C, and a crash."""

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from infra.redis.wire import STREAM_FIELD
from tests.conftest import server_processes, unique_username
from tests.integration.helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class DevRun:
    """A running `userbus dev` and the addresses it printed."""

    process: asyncio.subprocess.Process
    api: str
    database_url: str
    broker_url: str
    log: bytearray


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def userbus_dev(
    data_dir: Path, port: int, extra_env: dict[str, str] | None = None
) -> AsyncIterator[DevRun]:
    """Start `userbus dev` with no URLs configured; yield once it printed where it runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERBUS_")}
    env |= {"USERBUS_DATA_DIR": str(data_dir / ".userbus"), "USERBUS_API_PORT": str(port)}
    env |= extra_env or {}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "userbus", "dev",
        env=env, cwd=data_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as in a terminal
    )  # fmt: skip
    assert process.stdout is not None
    printed: dict[str, str] = {}
    async with asyncio.timeout(60):
        while "Ctrl-C" not in (line := (await process.stdout.readline()).decode()):
            assert line, "userbus dev exited before it was running"
            key, _, value = line.strip().partition(": ")
            printed[key] = value.strip()
    log = bytearray()
    # Drained all along: a full stderr pipe would block the process under test.
    draining = asyncio.gather(_drain(process.stdout, log), _drain(process.stderr, log))
    broker_url = printed["stream"].split(" on ", 1)[1]
    database_url = printed["database"].replace("postgresql+asyncpg://", "postgresql://")
    try:
        yield DevRun(process, printed["API"], database_url, broker_url, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await draining


async def _drain(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    assert stream is not None
    while chunk := await stream.read(65536):
        into.extend(chunk)


async def healthy(api: str) -> bool:
    """Whether the API answers /healthz."""
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{api}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_userbus_dev_runs_the_whole_path_and_stops_cleanly(data_dir: Path) -> None:
    async with userbus_dev(data_dir, free_port()) as dev:
        await eventually(lambda: healthy(dev.api), timeout=30)
        username = unique_username()
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{dev.api}/users",
                json={
                    "username": username,
                    "email": f"{username}@example.com",
                    "password": "p" * 10,
                },
            )
            assert response.status_code == 201
            docs = await client.get(f"{dev.api}/docs")
            assert docs.status_code == 200
        registered = time.monotonic()

        conn = await asyncpg.connect(dev.database_url)
        try:

            async def profile_exists() -> bool:
                row = await conn.fetchrow(
                    "SELECT 1 FROM profiles.profiles WHERE username = $1", username
                )
                return row is not None

            await eventually(profile_exists, timeout=1.0, interval=0.01)
            assert time.monotonic() - registered < 1.0
        finally:
            await conn.close()
        client_redis = redis.Redis.from_url(dev.broker_url)
        entries = await client_redis.xrange("userbus.users")
        await client_redis.aclose()
        assert username.encode() in entries[-1][1][STREAM_FIELD.encode()]

        dev.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await dev.process.wait() == 0
    assert server_processes(data_dir) == []


async def test_userbus_dev_starts_again_after_a_crash_and_keeps_its_data(data_dir: Path) -> None:
    username = unique_username()
    port = free_port()
    async with userbus_dev(data_dir, port) as dev:
        await eventually(lambda: healthy(dev.api), timeout=30)
        async with httpx.AsyncClient() as client:
            body = {"username": username, "email": f"{username}@example.com", "password": "p" * 10}
            assert (await client.post(f"{dev.api}/users", json=body)).status_code == 201
        dev.process.send_signal(signal.SIGKILL)  # no cleanup at all: orphans stay behind
        await dev.process.wait()
    assert server_processes(data_dir) != []

    async with userbus_dev(data_dir, port) as dev:
        await eventually(lambda: healthy(dev.api), timeout=30)
        async with httpx.AsyncClient() as client:
            login = {"username": username, "password": "p" * 10}
            assert (await client.post(f"{dev.api}/auth/login", json=login)).status_code == 200
        # Ctrl-C at a terminal signals the whole process group: the servers must be outside
        # it, so that they stop after the processes using them, not under them.
        servers = server_processes(data_dir)
        assert {proc.name() for proc in servers} >= {"postgres", "valkey-server"}
        assert all(os.getpgid(proc.pid) != dev.process.pid for proc in servers)
        # Ctrl-C at a terminal: SIGINT to the whole process group, children included.
        os.killpg(dev.process.pid, signal.SIGINT)
        async with asyncio.timeout(30):
            assert await dev.process.wait() == 0
        await asyncio.sleep(0.1)  # the last lines reach the drain
        log = dev.log.decode()
        # Nothing lost its server under it: the servers stopped after their users.
        assert "Traceback" not in log
        assert "ERROR" not in log
    assert server_processes(data_dir) == []


async def test_userbus_dev_runs_the_registration_saga_when_profiles_are_required(
    data_dir: Path,
) -> None:
    saga_on = {"USERBUS_REQUIRE_PROFILE": "true", "USERBUS_BCRYPT_ROUNDS": "4"}
    async with userbus_dev(data_dir, free_port(), saga_on) as dev:
        await eventually(lambda: healthy(dev.api), timeout=30)
        accepted, refused = unique_username(), unique_username()
        async with httpx.AsyncClient() as client:
            for name, display_name in ((accepted, "Ann"), (refused, "Support")):
                body = {
                    "username": name, "email": f"{name}@example.com", "password": "p" * 10,
                    "display_name": display_name,
                }  # fmt: skip
                response = await client.post(f"{dev.api}/users", json=body)
                assert (response.status_code, response.json()["status"]) == (201, "pending")

            async def status_of(name: str) -> int:
                login = {"username": name, "password": "p" * 10}
                return (await client.post(f"{dev.api}/auth/login", json=login)).status_code

            async def settled() -> bool:
                return await status_of(accepted) == 200 and await status_of(refused) == 401

            await eventually(settled, timeout=20)
        dev.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await dev.process.wait() == 0
    assert server_processes(data_dir) == []
