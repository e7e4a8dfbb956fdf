"""The registration saga end to end, on Redis and on Kafka: HTTP registration -> auth outbox ->
relay -> profile service (profile row + answer in its own outbox) -> answer relay -> auth's
answer follower -> activation or compensation in the auth outbox."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.saga.main import RegistrationSaga, create_registration_saga
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.answers import OUTBOX_SCHEMA
from downstream_examples.profiles.projection import ProfileProjection
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, broker_events, eventually

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


@dataclass
class Saga:
    """The running system of one test, with the registration saga on."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    profiles: ProjectionConsumer
    saga: RegistrationSaga
    broker_url: str
    answers_stream: str

    async def register(self, display_name: str | None = None) -> dict[str, Any]:
        """Register a new user over HTTP; the response body."""
        name = unique_username()
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        if display_name is not None:
            body["display_name"] = display_name
        response = await self.client.post("/users", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def log_in(self, username: str) -> httpx.Response:
        """A login attempt with the right password."""
        return await self.client.post(
            "/auth/login", json={"username": username, "password": PASSWORD}
        )

    async def auth_events(self, user_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        """The auth outbox's events about the user: (sequence, type, data)."""
        return await self._rows(
            "SELECT sequence, type, payload FROM auth.outbox WHERE subject = :id ORDER BY id",
            user_id,
        )

    async def answers(self, user_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        """The profile service's outbox events about the user."""
        return await self._rows(
            f"SELECT sequence, type, payload FROM {OUTBOX_SCHEMA}.outbox "
            "WHERE subject = :id ORDER BY id",
            user_id,
        )

    async def profile(self, user_id: str) -> dict[str, Any] | None:
        """The profile row of the user, or None."""
        async with self.engine.connect() as conn:
            row = await conn.execute(
                text("SELECT * FROM profiles.profiles WHERE user_id = :id"), {"id": UUID(user_id)}
            )
            found = row.mappings().first()
            return dict(found) if found else None

    async def _rows(self, sql: str, user_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(text(sql), {"id": UUID(user_id)})
            return [(row.sequence, row.type, row.payload["data"]) for row in rows]


@pytest.fixture
async def answers_stream(redis_url: str) -> AsyncIterator[str]:
    """The answers' stream or topic of this test alone (Redis streams deleted afterwards)."""
    name = f"test.profiles.{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    await client.delete(name, f"{name}.dlq")
    await client.aclose()


@pytest.fixture
async def saga(
    isolated_auth_settings: AuthSettings,
    relay_settings: RelaySettings,
    consumer_settings: ConsumerSettings,
    answers_stream: str,
    engine: AsyncEngine,
) -> AsyncIterator[Saga]:
    """API (saga on), both relays, the profile consumer and the auth saga, on one database."""
    auth = isolated_auth_settings.model_copy(
        update={"require_profile": True, "profile_stream": answers_stream}
    )
    profiles = create_consumer_app(consumer_settings, ProfileProjection())
    await profiles.start()  # creates the profile tables and the answers' outbox
    answer_relay = relay_settings.model_copy(
        update={"outbox_schema": OUTBOX_SCHEMA, "stream": answers_stream}
    )
    follower = consumer_settings.model_copy(
        update={"consumer_group": f"registrations-{uuid.uuid4().hex[:8]}"}
    )
    saga = create_registration_saga(auth, follower)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(create_relay(relay_settings).run(stop)),
        asyncio.create_task(create_relay(answer_relay).run(stop)),
        asyncio.create_task(saga.run(stop)),
    ]
    try:
        async with api_client(auth) as client:
            yield Saga(client, engine, profiles, saga, relay_settings.broker_url, answers_stream)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await profiles.stop()


async def test_an_accepted_registration_activates_the_user_who_can_then_log_in(
    saga: Saga,
) -> None:
    user = await saga.register(display_name="Alice A.")
    assert user["status"] == "pending"
    # Usually refused (the answer is milliseconds away); the saga may also already be done.
    early = await saga.log_in(user["username"])
    assert early.status_code in (200, 403)
    if early.status_code == 403:
        assert early.json()["detail"]["code"] == "registration_pending"

    async def logged_in() -> bool:
        return (await saga.log_in(user["username"])).status_code == 200

    await eventually(logged_in, timeout=20)
    assert [(s, t) for s, t, _ in await saga.auth_events(user["id"])] == [
        (1, "UserRegistered"),
        (2, "UserStatusChanged"),
    ]
    profile = await saga.profile(user["id"])
    assert profile is not None
    assert profile["display_name"] == "Alice A."
    assert [(s, t) for s, t, _ in await saga.answers(user["id"])] == [(1, "ProfileCreated")]
    published = await broker_events(saga.broker_url, saga.answers_stream)
    assert [(e["type"], e["subject"]) for e in published] == [("ProfileCreated", user["id"])]


async def test_a_rejected_display_name_deletes_the_user_and_leaves_no_profile(
    saga: Saga,
) -> None:
    user = await saga.register(display_name="Admin")

    async def compensated() -> bool:
        return len(await saga.auth_events(user["id"])) == 2

    await eventually(compensated, timeout=20)
    [_, (sequence, kind, data)] = await saga.auth_events(user["id"])
    assert (sequence, kind, data["reason"]) == (2, "UserDeleted", "registration_failed")
    [(_, answer, answer_data)] = await saga.answers(user["id"])
    assert (answer, answer_data["reason"]) == ("ProfileRejected", "display_name_reserved")

    async def deletion_seen_by_the_profile_service() -> bool:
        return saga.profiles.totals.applied >= 2

    await eventually(deletion_seen_by_the_profile_service, timeout=20)
    assert await saga.profile(user["id"]) is None
    refused = await saga.log_in(user["username"])
    assert refused.status_code == 401
    # The name is free again.
    again = await saga.client.post(
        "/users",
        json={"username": user["username"], "email": user["email"], "password": PASSWORD},
    )
    assert again.status_code == 201


async def test_several_registrations_each_get_their_answer(saga: Saga) -> None:
    accepted = [await saga.register() for _ in range(4)]
    refused = [await saga.register(display_name="Root") for _ in range(2)]

    async def all_settled() -> bool:
        for user in [*accepted, *refused]:
            if len(await saga.auth_events(user["id"])) != 2:
                return False
        return True

    await eventually(all_settled, timeout=30)
    for user in accepted:
        assert (await saga.auth_events(user["id"]))[1][1] == "UserStatusChanged"
    for user in refused:
        assert (await saga.auth_events(user["id"]))[1][1] == "UserDeleted"
    assert saga.saga.consumer.totals.applied == 6
