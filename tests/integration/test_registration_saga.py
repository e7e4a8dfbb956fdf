"""The registration saga on PostgreSQL: pending over HTTP, answers applied in the consumer's
transaction, expiry with SKIP LOCKED, duplicate and late answers, admins and pending users."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.bootstrap import build_context
from auth.saga.answers import ProfileAnswers
from auth.saga.sweeper import PendingRegistrationSweeper
from auth.service_layer.context import AuthContext
from auth.settings import AuthSettings
from consumers.applier import BatchOutcome, ProjectionApplier
from events import Envelope, Event, ProfileCreated, ProfileRejected, to_envelope
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer
from tests.integration.test_api_admin import make_admin

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def saga_settings(isolated_auth_settings: AuthSettings) -> AuthSettings:
    """Auth settings with the registration saga on, on this test's database."""
    return isolated_auth_settings.model_copy(update={"require_profile": True})


@pytest.fixture
async def client(saga_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app with the saga on."""
    async with api_client(saga_settings) as client:
        yield client


@pytest.fixture
async def context(saga_settings: AuthSettings, engine: AsyncEngine) -> AsyncIterator[AuthContext]:
    """The saga's use-case context on this test's database, as the saga process builds it."""
    context, resources = build_context(saga_settings, engine)
    async with resources:
        yield context


@pytest.fixture
async def answers(engine: AsyncEngine, context: AuthContext) -> ProjectionApplier:
    """The auth side's answer projection, its tracking table created on the auth database."""
    applier = ProjectionApplier(ProfileAnswers(context, event_source="/test"))
    async with engine.begin() as conn:
        await applier.setup(conn)
    return applier


async def register(client: httpx.AsyncClient, display_name: str | None = None) -> dict[str, Any]:
    name = unique_username()
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    if display_name is not None:
        body["display_name"] = display_name
    response = await client.post("/users", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def log_in(client: httpx.AsyncClient, username: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": PASSWORD})


def answer(event: Event) -> Envelope:
    return to_envelope(event, sequence=1, source="/userbus/profiles")


async def apply(
    engine: AsyncEngine, applier: ProjectionApplier, *envelopes: Envelope
) -> BatchOutcome:
    async with engine.begin() as conn:
        return await applier.apply_batch(conn, envelopes)


async def events_of(engine: AsyncEngine, user_id: str | UUID) -> list[tuple[int, str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT sequence, type, payload FROM auth.outbox WHERE subject = :id ORDER BY id"),
            {"id": UUID(str(user_id))},
        )
        return [(row.sequence, row.type, row.payload["data"]) for row in rows]


async def status_of(engine: AsyncEngine, user_id: str | UUID) -> str | None:
    async with engine.connect() as conn:
        row = await conn.execute(
            text("SELECT status FROM auth.users WHERE id = :id"), {"id": UUID(str(user_id))}
        )
        return row.scalar_one_or_none()


async def test_a_pending_user_is_registered_but_cannot_log_in(client: httpx.AsyncClient) -> None:
    user = await register(client)
    assert user["status"] == "pending"

    response = await log_in(client, user["username"])
    assert response.status_code == 403
    assert response.json()["detail"]["code"] == "registration_pending"
    basic = await client.get("/auth/basic", auth=(user["username"], PASSWORD))
    assert basic.status_code == 403
    # Without the password nothing tells that the account exists.
    wrong = await client.post(
        "/auth/login", json={"username": user["username"], "password": "wrong password"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["detail"]["code"] == "invalid_credentials"


async def test_profile_created_activates_the_user_once(
    client: httpx.AsyncClient, engine: AsyncEngine, answers: ProjectionApplier
) -> None:
    user = await register(client)
    created = answer(ProfileCreated(user_id=user["id"], created_at=NOW))

    outcome = await apply(engine, answers, created)
    again = await apply(engine, answers, created)

    assert (outcome.applied, again.duplicates) == (1, 1)
    assert await status_of(engine, user["id"]) == "active"
    assert (await log_in(client, user["username"])).status_code == 200
    events = await events_of(engine, user["id"])
    assert [(s, t) for s, t, _ in events] == [(1, "UserRegistered"), (2, "UserStatusChanged")]
    assert events[0][2]["status"] == "pending"
    assert (events[1][2]["old_status"], events[1][2]["new_status"]) == ("pending", "active")


async def test_the_accounts_answer_event_joins_the_trace_of_the_answer(
    client: httpx.AsyncClient, engine: AsyncEngine, answers: ProjectionApplier
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    user = await register(client)
    created = answer(ProfileCreated(user_id=user["id"], created_at=NOW)).model_copy(
        update={"traceparent": traceparent}
    )

    await apply(engine, answers, created)

    async with engine.connect() as conn:
        changed = await conn.scalar(
            text(
                "SELECT payload FROM auth.outbox WHERE subject = :id AND type = 'UserStatusChanged'"
            ),
            {"id": UUID(user["id"])},
        )
    assert changed["traceparent"] == traceparent


async def test_profile_rejected_deletes_the_user_with_registration_failed(
    client: httpx.AsyncClient, engine: AsyncEngine, answers: ProjectionApplier
) -> None:
    user = await register(client)
    rejected = ProfileRejected(user_id=user["id"], reason="display_name_reserved", rejected_at=NOW)

    await apply(engine, answers, answer(rejected))

    assert await status_of(engine, user["id"]) is None
    [_, (sequence, kind, data)] = await events_of(engine, user["id"])
    assert (sequence, kind, data["reason"]) == (2, "UserDeleted", "registration_failed")
    assert (await log_in(client, user["username"])).status_code == 401


async def test_an_answer_for_a_settled_user_changes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, answers: ProjectionApplier
) -> None:
    user = await register(client)
    await apply(engine, answers, answer(ProfileCreated(user_id=user["id"], created_at=NOW)))
    # A contradicting answer (from a replayed or buggy profile service) under a new id and
    # sequence: the account is active, no longer the saga's to change.
    late = to_envelope(
        ProfileRejected(user_id=user["id"], reason="late", rejected_at=NOW),
        sequence=2, source="/userbus/profiles",
    )  # fmt: skip
    unknown = answer(ProfileCreated(user_id=uuid.uuid4(), created_at=NOW))

    outcome = await apply(engine, answers, late, unknown)

    assert outcome.applied == 2
    assert await status_of(engine, user["id"]) == "active"
    assert len(await events_of(engine, user["id"])) == 2


def sweeper(context: AuthContext, timeout: float) -> PendingRegistrationSweeper:
    return PendingRegistrationSweeper(
        context, timeout=timedelta(seconds=timeout), interval=0.05, batch_size=2
    )


async def test_a_user_still_pending_after_the_timeout_expires_and_a_late_answer_is_a_no_op(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    answers: ProjectionApplier,
    context: AuthContext,
) -> None:
    late_ones = [await register(client) for _ in range(3)]
    settled = await register(client)
    await apply(engine, answers, answer(ProfileCreated(user_id=settled["id"], created_at=NOW)))
    await asyncio.sleep(0.3)
    fresh = await register(client)

    expired = await sweeper(context, timeout=0.25).sweep()

    assert expired == 3  # in batches of two
    for user in late_ones:
        assert await status_of(engine, user["id"]) is None
        [_, (_, kind, data)] = await events_of(engine, user["id"])
        assert (kind, data["reason"]) == ("UserDeleted", "registration_expired")
    assert await status_of(engine, settled["id"]) == "active"
    assert await status_of(engine, fresh["id"]) == "pending"
    # The profile service answers after all: too late, nothing changes.
    outcome = await apply(
        engine, answers, answer(ProfileCreated(user_id=late_ones[0]["id"], created_at=NOW))
    )
    assert outcome.applied == 1
    assert await status_of(engine, late_ones[0]["id"]) is None
    assert len(await events_of(engine, late_ones[0]["id"])) == 2


async def test_two_sweepers_expire_each_user_once(
    client: httpx.AsyncClient, engine: AsyncEngine, context: AuthContext
) -> None:
    users = [await register(client) for _ in range(6)]
    await asyncio.sleep(0.2)

    counts = await asyncio.gather(
        sweeper(context, timeout=0.1).sweep(), sweeper(context, timeout=0.1).sweep()
    )

    assert sum(counts) == 6
    for user in users:
        assert [kind for _, kind, _ in await events_of(engine, user["id"])] == [
            "UserRegistered",
            "UserDeleted",
        ]


async def test_admins_see_and_settle_pending_users(
    client: httpx.AsyncClient, saga_settings: AuthSettings, engine: AsyncEngine
) -> None:
    _, token = await make_admin(client, saga_settings)
    user = await register(client)

    listed = await client.get("/users?limit=500", headers=bearer(token))
    assert listed.status_code == 200
    assert {"username": user["username"], "status": "pending"}.items() <= next(
        u for u in listed.json()["items"] if u["id"] == user["id"]
    ).items()
    got = await client.get(f"/users/{user['username']}", headers=bearer(token))
    assert (got.status_code, got.json()["status"]) == (200, "pending")

    activated = await client.put(
        f"/users/{user['username']}", json={"status": "active"}, headers=bearer(token)
    )
    assert (activated.status_code, activated.json()["status"]) == (200, "active")
    assert (await log_in(client, user["username"])).status_code == 200
