"""HTTP -> PostgreSQL + outbox -> relay -> Redis Stream -> profile projection -> replay."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.replay import replay
from consumers.settings import ConsumerSettings
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.projection import ProfileProjection
from infra.brokers import broker_for
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, broker_events, eventually, login, register

pytestmark = pytest.mark.integration


@dataclass
class System:
    """The running system of one test: API client, relay and profile consumer."""

    client: httpx.AsyncClient
    consumer: ProjectionConsumer
    relay_settings: RelaySettings
    consumer_settings: ConsumerSettings
    engine: AsyncEngine

    async def events(self) -> list[dict[str, Any]]:
        """The stream's envelopes."""
        return await broker_events(self.relay_settings.broker_url, self.relay_settings.stream)

    async def profiles(self) -> list[tuple[Any, ...]]:
        """The profile projection's rows, ordered."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(text("SELECT * FROM profiles.profiles ORDER BY user_id"))
            return [tuple(row) for row in rows]


@pytest.fixture
async def system(
    isolated_auth_settings: AuthSettings,
    relay_settings: RelaySettings,
    consumer_settings: ConsumerSettings,
    engine: AsyncEngine,
) -> AsyncIterator[System]:
    """API, relay and profile consumer on this test's database and stream."""
    stop = asyncio.Event()
    relay = asyncio.create_task(create_relay(relay_settings).run(stop))
    consumer = create_consumer_app(consumer_settings, ProfileProjection())
    await consumer.start()
    try:
        async with api_client(isolated_auth_settings) as client:
            yield System(client, consumer, relay_settings, consumer_settings, engine)
    finally:
        await consumer.stop()
        stop.set()
        await relay


async def test_a_registration_reaches_the_stream_and_the_profile_within_a_second(
    system: System,
) -> None:
    username = unique_username()
    user = await register(system.client, username)
    committed = time.monotonic()

    async def profile_exists() -> bool:
        return any(row[1] == username for row in await system.profiles())

    await eventually(profile_exists, timeout=1.0, interval=0.005)
    assert time.monotonic() - committed < 1.0
    [event] = await system.events()
    assert event["type"] == "UserRegistered"
    assert event["subject"] == user["id"]
    assert event["sequence"] == 1
    assert event["data"]["username"] == username
    assert "password" not in str(event)
    assert "hash" not in str(event)


async def test_password_change_and_deletion_reach_the_stream_in_order(system: System) -> None:
    username = unique_username()
    await register(system.client, username)
    response = await system.client.post(
        "/auth/password",
        json={"username": username, "old_password": "a long passphrase", "new_password": "x" * 10},
    )
    assert response.status_code == 204
    token = await login(system.client, username, "x" * 10)
    response = await system.client.delete(
        f"/users/{username}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204

    async def three_events() -> bool:
        return len(await system.events()) == 3

    await eventually(three_events)
    events = await system.events()
    assert [(e["type"], e["sequence"]) for e in events] == [
        ("UserRegistered", 1),
        ("PasswordChanged", 2),
        ("UserDeleted", 3),
    ]
    assert events[1]["data"]["reason"] == "change"

    async def profile_gone() -> bool:
        return system.consumer.totals.applied == 2 and await system.profiles() == []

    await eventually(profile_gone)


async def test_a_rejected_duplicate_registration_publishes_nothing(system: System) -> None:
    username = unique_username()
    await register(system.client, username)
    duplicate = await system.client.post(
        "/users",
        json={"username": username.upper(), "email": "other@example.com", "password": "y" * 10},
    )
    assert duplicate.status_code == 409
    later = unique_username()
    await register(system.client, later)

    async def two_events() -> bool:
        return len(await system.events()) == 2

    await eventually(two_events)
    await asyncio.sleep(0.2)
    # (Kafka orders events per user's partition only: compare as a set.)
    assert sorted(e["data"]["username"] for e in await system.events()) == sorted([username, later])


@pytest.mark.parametrize("source", ["outbox", "stream"])
async def test_replay_reproduces_the_live_projection(system: System, source: str) -> None:
    names = [unique_username() for _ in range(6)]
    for name in names:
        await register(system.client, name)
    for name in names[:2]:
        token = await login(system.client, name)
        response = await system.client.delete(
            f"/users/{name}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204

    async def caught_up() -> bool:
        return system.consumer.totals.applied == 8

    await eventually(caught_up)
    live = await system.profiles()
    assert sorted(row[1] for row in live) == sorted(names[2:])

    history = (
        OutboxLogSource(system.consumer_settings.event_log_database_url)
        if source == "outbox"
        else broker_for(system.relay_settings.broker_url).history(system.relay_settings.stream)
    )
    outcome = await replay(ProfileProjection(), system.engine, history)
    assert outcome.applied == 8
    assert await system.profiles() == live
