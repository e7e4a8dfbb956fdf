"""Chaos: the broker loses its data while consumers lag; nobody but the relay and consumers acts.

Redis: a redis-server of this test alone, without persistence (`--save '' --appendonly no`),
killed and started again empty while one consumer is slowed and the others are stopped.
Kafka: the topic deleted on the Tansu broker and made again while the consumers are stopped.
300 users register through the outbox meanwhile. Afterwards every example projection holds
every user: the relay found the loss and published the log again, and the consumers made
their groups again and absorbed what they had already seen.
"""

import asyncio
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from auth.domain.model import User
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork
from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, Event
from infra.kafka.admin import ensure_topic
from infra.kafka.urls import kafka_servers
from infra.publishing import TopicLayout
from producers.main import create_relay
from producers.relay import relay_backlog
from producers.settings import RelaySettings
from tests.conftest import KAFKA_PARTITIONS, KAFKA_SESSION_TIMEOUT_MS, free_port, unique_username
from tests.integration.helpers import eventually
from userbus.projections import projection_named

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = datetime(2026, 1, 1, tzinfo=UTC)
USERS = 300
# Each example projection, and how to count the users it holds.
HOLDINGS = {
    "profiles": "SELECT count(*) FROM profiles.profiles",
    "directory": "SELECT count(*) FROM directory.members",
    "audit": "SELECT count(DISTINCT user_id) FROM audit.events",
    "notifier": "SELECT count(*) FROM notifier.recipients",
}


class RedisServer:
    """A redis-server of this test alone on a free port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (empty) and wait until it answers."""
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "PING"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return
            subprocess.run(["sleep", "0.05"], check=True)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL it: without persistence, everything it held is gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """The test's own Redis, killed at the end."""
    server = RedisServer()
    server.start()
    yield server
    server.kill()


class SlowProfiles(ProfileProjection):
    """The profile projection taking its time over each batch: a consumer that lags."""

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        """Apply the batch after a pause."""
        await asyncio.sleep(0.05)
        await super().apply_many(conn, batch)


async def register_users(engine: AsyncEngine, count: int) -> None:
    """Register users through the unit of work: each commits its UserRegistered to the outbox."""
    for _ in range(count):
        name = unique_username()
        user = User.register(username=name, email=f"{name}@example.com", password_hash="h", now=NOW)
        async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
            await uow.users.add(user)
            await uow.commit()


async def holdings(engine: AsyncEngine) -> dict[str, int]:
    """How many users each projection holds (0 before it has its tables)."""
    counts = {}
    async with engine.connect() as conn:
        for name, query in HOLDINGS.items():
            try:
                async with conn.begin_nested():
                    counts[name] = int(await conn.scalar(text(query)) or 0)
            except Exception:
                counts[name] = 0
    return counts


async def everyone_everywhere(engine: AsyncEngine) -> bool:
    """Whether every projection holds every user."""
    return await holdings(engine) == dict.fromkeys(HOLDINGS, USERS)


class Consumers:
    """The example projections' consumers, each started and stopped on demand."""

    def __init__(self, settings: ConsumerSettings, *, slow_profiles: bool = False) -> None:
        self.settings = settings
        self.slow_profiles = slow_profiles
        self.running: dict[str, ProjectionConsumer] = {}

    def _projection(self, name: str) -> Projection:
        if name == "profiles" and self.slow_profiles:
            return SlowProfiles()
        return projection_named(name)

    async def start(self, names: Sequence[str] = tuple(HOLDINGS)) -> None:
        """Start the named consumers, each in its own group."""
        for name in names:
            group = f"{name}-{self.settings.stream.rsplit('.', 1)[1]}"
            settings = self.settings.model_copy(update={"consumer_group": group})
            consumer = create_consumer_app(settings, self._projection(name))
            await consumer.start()
            self.running[name] = consumer

    async def stop(self, names: Sequence[str] | None = None) -> None:
        """Stop the named consumers (all by default)."""
        for name in list(names or self.running):
            consumer = self.running.pop(name, None)
            if consumer is not None:
                await consumer.stop()


async def run_relay_until(settings: RelaySettings, stop: asyncio.Event) -> None:
    """The relay, checking for lost data every second."""
    await create_relay(settings.model_copy(update={"relay_loss_check_seconds": 1.0})).run(stop)


async def test_a_redis_restarted_without_its_data_while_consumers_lag_loses_no_user(
    redis_server: RedisServer, isolated_database_url: str, engine: AsyncEngine
) -> None:
    stream = f"chaos.users.{uuid.uuid4().hex[:8]}"
    relay = RelaySettings(
        database_url=isolated_database_url, broker_url=redis_server.url, stream=stream
    )
    consumers = Consumers(
        ConsumerSettings(
            database_url=isolated_database_url,
            broker_url=redis_server.url,
            stream=stream,
            consumer_name="chaos",
            consumer_batch_size=20,
        ),
        slow_profiles=True,
    )
    stop = asyncio.Event()
    relaying = asyncio.create_task(run_relay_until(relay, stop))
    try:
        await consumers.start()
        await register_users(engine, USERS // 3)
        # The others stop; profiles goes on, slowly, and lags behind the rest.
        await consumers.stop(["directory", "audit", "notifier"])
        await register_users(engine, USERS - USERS // 3)
        await eventually(lambda: _relayed(isolated_database_url), timeout=30, interval=0.1)
        assert await holdings(engine) != dict.fromkeys(HOLDINGS, USERS)  # it lags

        redis_server.kill()
        await asyncio.sleep(0.5)
        redis_server.start()  # empty: the stream, its groups and the relay's mark are gone
        await consumers.start(["directory", "audit", "notifier"])
        await eventually(lambda: everyone_everywhere(engine), timeout=90, interval=0.5)
    finally:
        await consumers.stop()
        stop.set()
        await relaying
    assert await holdings(engine) == dict.fromkeys(HOLDINGS, USERS)


@pytest.mark.kafka
async def test_a_kafka_topic_deleted_and_made_again_loses_no_user(
    kafka_url: str, isolated_database_url: str, engine: AsyncEngine
) -> None:
    topic = f"chaos.users.{uuid.uuid4().hex[:8]}"
    relay = RelaySettings(
        database_url=isolated_database_url,
        broker_url=kafka_url,
        stream=topic,
        kafka_partitions=KAFKA_PARTITIONS,
        kafka_idempotent_producer=False,
    )
    consumers = Consumers(
        ConsumerSettings(
            database_url=isolated_database_url,
            broker_url=kafka_url,
            stream=topic,
            consumer_name="chaos",
            kafka_partitions=KAFKA_PARTITIONS,
            kafka_session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS,
        )
    )
    stop = asyncio.Event()
    relaying = asyncio.create_task(run_relay_until(relay, stop))
    try:
        await consumers.start()
        await register_users(engine, USERS // 3)
        await consumers.stop()
        await register_users(engine, USERS - USERS // 3)
        await eventually(lambda: _relayed(isolated_database_url), timeout=30, interval=0.1)

        servers = kafka_servers(kafka_url)
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
        await asyncio.sleep(0.3)
        await ensure_topic(servers, topic, TopicLayout(KAFKA_PARTITIONS))  # made again, empty
        await consumers.start()
        await eventually(lambda: everyone_everywhere(engine), timeout=90, interval=0.5)
    finally:
        await consumers.stop()
        stop.set()
        await relaying
    assert await holdings(engine) == dict.fromkeys(HOLDINGS, USERS)


async def _relayed(database_url: str) -> bool:
    return await relay_backlog(database_url) == 0
