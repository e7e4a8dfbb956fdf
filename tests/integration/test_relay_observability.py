"""The relay's metrics and probes on real PostgreSQL and Redis: published, backlog, stalls."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from infra.observability.probe_server import serving_probes
from infra.publishing import PendingEvent
from infra.settings import asyncpg_dsn
from producers.main import create_relay, run_relay
from producers.observed import BacklogSample, relay_probes, relay_registry, sample_backlog
from producers.relay import OutboxRelay
from producers.settings import RelaySettings
from tests.conftest import free_port
from tests.integration.feed_helpers import insert_registration
from tests.integration.helpers import eventually
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_api_observability import sample

pytestmark = [pytest.mark.integration, pytest.mark.redis]


async def write_events(database_url: str, count: int) -> None:
    """`count` registrations committed into the outbox."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for _ in range(count):
            await insert_registration(conn, uuid.uuid4())
    finally:
        await conn.close()


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """Redis only: the probes and metrics are the same whatever the broker."""
    return redis_url


@pytest.fixture
def settings(relay_settings: RelaySettings) -> RelaySettings:
    """The relay settings of this test, sampling often, with a metrics port."""
    return relay_settings.model_copy(
        update={"metrics_port": free_port(), "metrics_host": "127.0.0.1",
                "metrics_sample_seconds": 0.1}
    )  # fmt: skip


async def test_the_relays_metrics_move_and_its_probes_answer(settings: RelaySettings) -> None:
    stop = asyncio.Event()
    await write_events(settings.database_url, 4)  # waiting before the relay starts
    running = asyncio.create_task(run_relay(settings, stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.metrics_port}") as http:

            async def published(count: int) -> bool:
                try:
                    page = (await http.get("/metrics")).text
                except httpx.TransportError:
                    return False
                return (
                    sample(page, "userbus_relay_published_events_total") == count
                    and sample(page, "userbus_relay_outbox_backlog") == 0
                )

            await eventually(lambda: published(4), timeout=20)
            await write_events(settings.database_url, 3)
            await eventually(lambda: published(7), timeout=20)
            assert (await http.get("/livez")).json() == {"status": "live"}
            ready = await http.get("/readyz")
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "loop": "ok"}
    finally:
        stop.set()
        await running


async def test_the_backlog_sample_shows_the_oldest_unpublished_events_age(
    settings: RelaySettings,
) -> None:
    await write_events(settings.database_url, 2)
    into = BacklogSample()
    await asyncio.sleep(0.3)
    await sample_backlog(settings.database_url, settings.outbox_schema, into)
    assert into.backlog >= 2
    assert into.oldest_age_seconds >= 0.3


class HangingPublisher:
    """A broker that accepts the connection and then never answers a publish."""

    async def connect(self) -> None:
        """Nothing to open."""

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Hang."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        """Nothing to close."""


@asynccontextmanager
async def probed(relay: OutboxRelay, settings: RelaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """The relay's probe server beside it, and a client of it."""
    registry = relay_registry(relay, BacklogSample(), settings.outbox_schema)
    probes = relay_probes(relay, settings.database_url, settings.broker_url, settings.stream)
    async with (
        serving_probes(registry, probes, "127.0.0.1", settings.metrics_port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.metrics_port}") as client,
    ):
        yield client


async def test_a_stalled_relay_fails_livez(settings: RelaySettings) -> None:
    relay = create_relay(settings, publisher=HangingPublisher())
    relay.heartbeat.stale_after = 0.5
    stop = asyncio.Event()
    await write_events(settings.database_url, 1)
    running = asyncio.create_task(relay.run(stop))
    try:
        async with probed(relay, settings) as client:
            deadline = time.monotonic() + 10
            while (live := await client.get("/livez")).status_code == 200:
                assert time.monotonic() < deadline, "the stalled relay stayed live"
                await asyncio.sleep(0.1)
            assert live.status_code == 503
            assert live.json()["detail"]["code"] == "stalled"
            ready = await client.get("/readyz")
            assert ready.json()["detail"]["message"] == "not ready: loop"
    finally:
        stop.set()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_readyz_is_503_while_the_relays_database_is_unreachable(
    settings: RelaySettings,
) -> None:
    target = urlsplit(settings.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.open()
    proxied = settings.model_copy(
        update={"database_url": _through(settings.database_url, proxy.port)}
    )
    relay = create_relay(proxied)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        async with probed(relay, proxied) as client:
            assert (await client.get("/readyz")).status_code == 200
            await proxy.close()
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["detail"]["message"] == "not ready: database"
            assert (await client.get("/livez")).status_code == 200  # retrying is not stalling

            async def failures_counted() -> bool:
                page = (await client.get("/metrics")).text
                return sample(page, "userbus_relay_publish_errors_total", cause="database") > 0

            await eventually(failures_counted)
            await proxy.open()

            async def ready_again() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready_again)
    finally:
        stop.set()
        await running
        await proxy.close()
