"""Helpers of the event feed's tests: service clients, their tokens, raw outbox rows."""

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from auth.bootstrap import build_service_clients
from auth.domain.service_clients import EVENTS_READ
from auth.service_layer.service_clients import create_service_client, revoke_service_client
from auth.settings import AuthSettings
from events import UserRegistered, to_envelope
from producers.outbox import outbox_row

INSERT = (
    "INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id"
)


async def new_service_client(
    settings: AuthSettings, name: str | None = None, *, scope: str = EVENTS_READ
) -> tuple[str, str]:
    """A new service client, as `userbus service create` makes it: (client_id, secret)."""
    engine = create_async_engine(settings.database_url)
    try:
        name = name or f"svc-{uuid.uuid4().hex[:10]}"
        client, secret = await create_service_client(
            build_service_clients(engine), name=name, scope=scope
        )
        return client.client_id, secret
    finally:
        await engine.dispose()


async def revoke(settings: AuthSettings, name: str) -> None:
    """Revoke the service client of this name, as `userbus service revoke` does."""
    engine = create_async_engine(settings.database_url)
    try:
        await revoke_service_client(build_service_clients(engine), name=name)
    finally:
        await engine.dispose()


async def service_token(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    """A service token from the client-credentials grant (credentials in HTTP Basic)."""
    response = await client.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def insert_registration(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    """Write a UserRegistered row into the outbox on `conn`; its position."""
    now = datetime.now(UTC)
    event = UserRegistered(
        user_id=user_id,
        username=f"u{user_id.hex[:10]}",
        email=f"{user_id.hex[:10]}@example.com",
        role="user",
        registered_at=now,
    )
    row = outbox_row(to_envelope(event, sequence=1, source="/test", time=now))
    position: int = await conn.fetchval(
        INSERT,
        row["event_id"], row["subject"], row["sequence"], row["type"],
        json.dumps(row["payload"]), row["occurred_at"],
    )  # fmt: skip
    return position
