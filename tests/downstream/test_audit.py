"""The audit example: every event recorded once, append-only, rebuilt by replay, read per user."""

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.settings import AuthSettings
from consumers.applier import ProjectionApplier
from consumers.replay import replay
from consumers.settings import ConsumerSettings
from consumers.sources import OutboxLogSource
from downstream_examples.audit.main import create_audit_app, create_audit_consumer
from downstream_examples.audit.projection import AuditProjection
from downstream_examples.audit.settings import AuditSettings
from events import (
    EVENT_TYPES,
    Envelope,
    Event,
    MfaDisabled,
    MfaEnabled,
    PasswordChanged,
    PasswordResetRequested,
    ProfileCreated,
    ProfileRejected,
    UserDeleted,
    UserEmailVerified,
    UserRegistered,
    UserRoleChanged,
    UserStatusChanged,
    UserUpdated,
    event_from_envelope,
    to_envelope,
)
from events.erasure import erased_username, redact_data
from infra.settings import sqlalchemy_url
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, eventually, login, register

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# One sample per type of the contract; a type added to events/ without one fails the test.
SAMPLES: dict[str, Callable[[UUID], Event]] = {
    "UserRegistered": lambda u: UserRegistered(
        user_id=u, username="audited", email="audited@example.com", role="user", registered_at=NOW
    ),
    "UserUpdated": lambda u: UserUpdated(user_id=u, updated_at=NOW, display_name=None),
    "UserRoleChanged": lambda u: UserRoleChanged(
        user_id=u, old_role="user", new_role="admin", changed_at=NOW
    ),
    "UserStatusChanged": lambda u: UserStatusChanged(
        user_id=u, old_status="active", new_status="disabled", changed_at=NOW
    ),
    "PasswordResetRequested": lambda u: PasswordResetRequested(user_id=u, requested_at=NOW),
    "PasswordChanged": lambda u: PasswordChanged(user_id=u, changed_at=NOW, reason="reset"),
    "UserEmailVerified": lambda u: UserEmailVerified(
        user_id=u, email="audited@example.com", verified_at=NOW
    ),
    "UserDeleted": lambda u: UserDeleted(user_id=u, username="audited", deleted_at=NOW),
    # The profile service's answers (their own stream; an audit log may follow it too).
    "ProfileCreated": lambda u: ProfileCreated(user_id=u, created_at=NOW),
    "ProfileRejected": lambda u: ProfileRejected(user_id=u, reason="test", rejected_at=NOW),
    "MfaEnabled": lambda u: MfaEnabled(user_id=u, method="totp", enabled_at=NOW),
    "MfaDisabled": lambda u: MfaDisabled(user_id=u, method="totp", disabled_at=NOW, reason="user"),
}


def history(user_id: UUID | None = None) -> list[Envelope]:
    """One envelope of every event type for one user, sequences 1, 2, ... in SAMPLES order."""
    user_id = user_id or uuid.uuid4()
    return [
        to_envelope(make(user_id), sequence=n, source="/test")
        for n, make in enumerate(SAMPLES.values(), start=1)
    ]


async def recorded(engine: AsyncEngine, user_id: UUID) -> list[dict[str, Any]]:
    """The audit rows of one user, in sequence order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT * FROM audit.events WHERE user_id = :u ORDER BY sequence"), {"u": user_id}
        )
        return [dict(row._mapping) for row in rows]


async def apply(engine: AsyncEngine, envelopes: list[Envelope]) -> None:
    """Deliver envelopes to the audit projection as a consumer does: one batch, one commit."""
    applier = ProjectionApplier(AuditProjection())
    async with engine.begin() as conn:
        await applier.setup(conn)
        await applier.apply_batch(conn, envelopes)


@asynccontextmanager
async def audit_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real audit API (lifespan included), without a socket."""
    app = create_audit_app(AuditSettings(database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            yield client


def test_the_projection_handles_every_type_of_the_contract() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)
    assert AuditProjection.handles == frozenset(EVENT_TYPES.values())


async def test_every_event_type_is_recorded_once_even_when_delivered_twice(
    engine: AsyncEngine,
) -> None:
    envelopes = history()
    user_id = envelopes[0].user_id

    await apply(engine, envelopes)
    await apply(engine, envelopes)  # a redelivery: the tracking records absorb it
    # A redelivery the tracking records cannot see (e.g. they were lost): the event id does.
    async with engine.begin() as conn:
        for envelope in envelopes:
            await AuditProjection().apply(conn, event_from_envelope(envelope), envelope)

    rows = await recorded(engine, user_id)
    assert [(r["type"], r["sequence"]) for r in rows] == [(e.type, e.sequence) for e in envelopes]
    assert [r["event_id"] for r in rows] == [e.id for e in envelopes]
    # The history holds the user's deletion: their PII is blanked, everything else kept.
    assert [r["data"] for r in rows] == [redact_data(e.data, user_id) for e in envelopes]
    assert all(
        r["occurred_at"] == e.time and r["source"] == "/test"
        for r, e in zip(rows, envelopes, strict=True)
    )
    # The wire data is kept as sent: the sparse UserUpdated holds only what changed.
    assert rows[1]["data"] == {
        "user_id": str(user_id),
        "updated_at": "2026-01-01T00:00:00Z",
        "display_name": None,
    }


async def test_a_type_newer_than_the_contract_is_recorded_as_delivered(
    engine: AsyncEngine,
) -> None:
    # An audit log must not have holes: a type this service does not know yet is kept too.
    [first, *_] = history()
    newer = first.model_copy(update={"id": uuid.uuid4(), "type": "UserTeleported", "sequence": 2})
    await apply(engine, [first, newer])
    assert [r["type"] for r in await recorded(engine, first.user_id)] == [
        "UserRegistered",
        "UserTeleported",
    ]


async def test_the_log_refuses_update_and_delete_but_replay_rebuilds_it(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    username = unique_username()
    async with api_client(isolated_auth_settings) as client:
        user = await register(client, username)
        response = await client.post(
            "/auth/password",
            json={
                "username": username,
                "old_password": "a long passphrase",
                "new_password": "x" * 10,
            },
        )
        assert response.status_code == 204
    user_id = UUID(user["id"])
    source = OutboxLogSource(sqlalchemy_url(isolated_database_url))

    outcome = await replay(AuditProjection(), engine, source)
    assert outcome.applied == 2
    before = await recorded(engine, user_id)
    assert [r["type"] for r in before] == ["UserRegistered", "PasswordChanged"]

    for statement in (
        "UPDATE audit.events SET type = 'Forged' WHERE user_id = :u",
        "DELETE FROM audit.events WHERE user_id = :u",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"u": user_id})
    assert await recorded(engine, user_id) == before

    # Replay builds a new log beside it and swaps it in: no row is ever changed.
    outcome = await replay(AuditProjection(), engine, source)
    assert outcome.applied == 2
    after = await recorded(engine, user_id)
    ignore = {"recorded_at"}  # recorded again, so later
    assert [{k: v for k, v in r.items() if k not in ignore} for r in after] == [
        {k: v for k, v in r.items() if k not in ignore} for r in before
    ]
    async with engine.connect() as conn:
        triggers = await conn.scalar(
            text("SELECT count(*) FROM pg_trigger WHERE tgname = 'events_append_only'")
        )
    assert triggers == 1


async def test_the_api_returns_a_users_events_in_sequence_order(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    envelopes = history()
    user_id = envelopes[0].user_id
    other = history()
    # Recorded out of order (the projection itself does not care): the API sorts.
    shuffled = envelopes + other
    random.shuffle(shuffled)
    await apply(engine, [])  # creates the tables
    async with engine.begin() as conn:
        for envelope in shuffled:
            await AuditProjection().apply(conn, event_from_envelope(envelope), envelope)

    async with audit_client(isolated_database_url) as client:
        response = await client.get(f"/users/{user_id}/events")
        assert response.status_code == 200
        body = response.json()
        assert [(e["sequence"], e["type"]) for e in body] == [
            (e.sequence, e.type) for e in envelopes
        ]
        assert body[0]["event_id"] == str(envelopes[0].id)
        assert body[0]["data"]["role"] == "user"
        assert {e["user_id"] for e in body} == {str(user_id)}

        page = await client.get(
            f"/users/{user_id}/events", params={"after_sequence": 2, "limit": 3}
        )
        assert [e["sequence"] for e in page.json()] == [3, 4, 5]

        unknown = await client.get(f"/users/{uuid.uuid4()}/events")
        assert (unknown.status_code, unknown.json()) == (200, [])

        assert (await client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/users/not-a-uuid/events", {}),
        (f"/users/{uuid.uuid4()}/events", {"limit": 0}),
        (f"/users/{uuid.uuid4()}/events", {"limit": 1001}),
        (f"/users/{uuid.uuid4()}/events", {"limit": "many"}),
        (f"/users/{uuid.uuid4()}/events", {"after_sequence": -1}),
    ],
)
async def test_the_api_answers_bad_input_with_422(
    isolated_database_url: str, path: str, params: dict[str, Any]
) -> None:
    async with audit_client(isolated_database_url) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"]


async def test_registration_password_change_and_deletion_reach_the_audit_api_in_order(
    isolated_auth_settings: AuthSettings,
    relay_settings: RelaySettings,
    consumer_settings: ConsumerSettings,
    isolated_database_url: str,
) -> None:
    stop = asyncio.Event()
    relay = asyncio.create_task(create_relay(relay_settings).run(stop))
    consumer = create_audit_consumer(consumer_settings)
    await consumer.start()
    try:
        async with api_client(isolated_auth_settings) as client:
            username = unique_username()
            user = await register(client, username)
            response = await client.post(
                "/auth/password",
                json={
                    "username": username,
                    "old_password": "a long passphrase",
                    "new_password": "x" * 10,
                },
            )
            assert response.status_code == 204
            token = await login(client, username, "x" * 10)
            response = await client.delete(
                f"/users/{username}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 204

        async with audit_client(isolated_database_url) as audit:

            async def three_events() -> bool:
                response = await audit.get(f"/users/{user['id']}/events")
                return len(response.json()) == 3

            await eventually(three_events)
            body = (await audit.get(f"/users/{user['id']}/events")).json()
    finally:
        await consumer.stop()
        stop.set()
        await relay

    assert [(e["type"], e["sequence"]) for e in body] == [
        ("UserRegistered", 1),
        ("PasswordChanged", 2),
        ("UserDeleted", 3),
    ]
    # The deletion blanked who it was; the facts stay.
    assert body[0]["data"]["username"] == body[2]["data"]["username"]
    assert body[0]["data"]["username"] == erased_username(UUID(user["id"]))
    assert username not in str(body)
    assert body[1]["data"]["reason"] == "change"
    assert body[2]["source"] == body[0]["source"]
    wire = str([e["data"] for e in body]).lower()
    assert "password" not in wire
    assert "hash" not in wire
