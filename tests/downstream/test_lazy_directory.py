"""The lazy directory: members from verified tokens and from events converge; deletions win."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.settings import AuthSettings
from consumers.consumer import ProjectionConsumer
from consumers.jwks import JwksVerifier, TokenRejectedError
from consumers.settings import ConsumerSettings
from downstream_examples.lazy_directory.main import (
    create_directory_app,
    create_directory_consumer,
)
from downstream_examples.lazy_directory.projection import DirectoryProjection
from downstream_examples.lazy_directory.settings import DirectorySettings
from events import Event, UserDeleted, UserRegistered, UserRoleChanged, to_envelope
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, eventually, login, register

pytestmark = pytest.mark.integration


@dataclass
class Directory:
    """The real auth service and the directory API of one test, on that test's database."""

    auth: httpx.AsyncClient
    client: httpx.AsyncClient
    verifier: JwksVerifier
    engine: AsyncEngine

    async def signed_up(self) -> tuple[str, UUID, str]:
        """A new user registered and logged in through the auth API: name, id, token."""
        username = unique_username()
        user = await register(self.auth, username)
        return username, UUID(user["id"]), await login(self.auth, username)

    async def members(self, user_id: UUID) -> list[dict[str, Any]]:
        """The directory's rows for one user (at most one, if it works)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT * FROM directory.members WHERE user_id = :u"), {"u": user_id}
            )
            return [dict(row._mapping) for row in rows]

    async def tombstoned(self, user_id: UUID) -> bool:
        """Whether the directory has recorded the user's deletion."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT 1 FROM directory.deleted_users WHERE user_id = :u"), {"u": user_id}
            )
            return rows.first() is not None

    async def apply(self, event: Event, sequence: int) -> None:
        """Apply one event as the consumer would, without a broker."""
        envelope = to_envelope(event, sequence=sequence, source="/test")
        async with self.engine.begin() as conn:
            await DirectoryProjection().apply(conn, event, envelope)


@pytest.fixture
async def directory(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, engine: AsyncEngine
) -> AsyncIterator[Directory]:
    """The auth API in process, and the directory verifying its tokens from its real JWKS."""
    async with api_client(isolated_auth_settings) as auth:
        jwks_url = f"{auth.base_url}/.well-known/jwks.json"
        settings = DirectorySettings(
            database_url=isolated_database_url,
            jwks_url=jwks_url,
            jwt_issuer=isolated_auth_settings.jwt_issuer,
            jwt_audience=isolated_auth_settings.jwt_audience,
        )
        # The verifier reaches the auth app through its ASGI client: the keys it checks
        # tokens with come from the service's own /.well-known/jwks.json.
        verifier = JwksVerifier(
            jwks_url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            http=auth,
        )
        app = create_directory_app(settings, verifier)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://directory"
            ) as client:
                yield Directory(auth, client, verifier, engine)


@asynccontextmanager
async def event_pipeline(
    relay_settings: RelaySettings, consumer_settings: ConsumerSettings
) -> AsyncIterator[ProjectionConsumer]:
    """The outbox relay and the directory's consumer, running until the block ends."""
    stop = asyncio.Event()
    relay = asyncio.create_task(create_relay(relay_settings).run(stop))
    consumer = create_directory_consumer(consumer_settings)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()
        stop.set()
        await relay


async def test_token_and_event_paths_converge_and_a_deletion_refuses_the_token(
    directory: Directory, relay_settings: RelaySettings, consumer_settings: ConsumerSettings
) -> None:
    username, user_id, token = await directory.signed_up()

    # (a) No event has been consumed yet: the verified token alone makes the member.
    response = await directory.client.get("/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    member = response.json()
    assert member["user_id"] == str(user_id)
    assert (member["username"], member["role"], member["source"]) == (username, "user", "token")
    [from_token] = await directory.members(user_id)

    async with event_pipeline(relay_settings, consumer_settings):
        # (b) UserRegistered arrives and confirms the same row rather than adding one.
        async def confirmed() -> bool:
            rows = await directory.members(user_id)
            return len(rows) == 1 and rows[0]["source"] == "event"

        await eventually(confirmed)
        [from_event] = await directory.members(user_id)
        assert from_event["first_seen_at"] == from_token["first_seen_at"]
        assert (from_event["username"], from_event["role"]) == (username, "user")

        # (c) The user is deleted: the member goes, whichever path created it.
        response = await directory.auth.delete(f"/users/{username}", headers=bearer(token))
        assert response.status_code == 204, response.text

        async def forgotten() -> bool:
            return await directory.members(user_id) == [] and await directory.tombstoned(user_id)

        await eventually(forgotten)

    # The token still verifies (it expires in 15 minutes) but must not resurrect the member.
    assert (await directory.verifier.verify(token)).user_id == user_id
    response = await directory.client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "user_deleted"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await directory.members(user_id) == []


async def test_a_second_sight_of_a_token_updates_the_same_member(directory: Directory) -> None:
    _, user_id, token = await directory.signed_up()

    first = (await directory.client.get("/me", headers=bearer(token))).json()
    second = (await directory.client.get("/me", headers=bearer(token))).json()

    assert second["first_seen_at"] == first["first_seen_at"]
    assert second["last_seen_at"] >= first["last_seen_at"]
    assert len(await directory.members(user_id)) == 1


async def test_a_role_change_event_outranks_the_role_in_a_token(directory: Directory) -> None:
    _, user_id, token = await directory.signed_up()
    await directory.client.get("/me", headers=bearer(token))

    now = datetime.now(UTC)
    await directory.apply(
        UserRoleChanged(user_id=user_id, old_role="user", new_role="admin", changed_at=now), 2
    )
    response = await directory.client.get("/me", headers=bearer(token))

    # The token (issued before the change) still says "user"; the event is the newer truth.
    assert response.json()["role"] == "admin"


async def test_a_token_checked_while_the_deletion_commits_is_refused(
    directory: Directory,
) -> None:
    username, user_id, token = await directory.signed_up()
    await directory.client.get("/me", headers=bearer(token))
    deleted = UserDeleted(user_id=user_id, username=username, deleted_at=datetime.now(UTC))

    async with directory.engine.connect() as conn:
        transaction = await conn.begin()
        await DirectoryProjection().apply(
            conn, deleted, to_envelope(deleted, sequence=2, source="/t")
        )
        request = asyncio.create_task(directory.client.get("/me", headers=bearer(token)))
        await asyncio.sleep(0.3)
        assert not request.done()  # it waits for the user's lock, held by the deletion
        await transaction.commit()
    response = await request

    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "user_deleted"
    assert await directory.members(user_id) == []


async def test_a_registration_replayed_after_the_deletion_does_not_resurrect(
    directory: Directory,
) -> None:
    username, user_id, _ = await directory.signed_up()
    now = datetime.now(UTC)
    registered = UserRegistered(
        user_id=user_id,
        username=username,
        email=f"{username}@example.com",
        role="user",
        registered_at=now,
    )

    await directory.apply(registered, 1)
    await directory.apply(UserDeleted(user_id=user_id, username=username, deleted_at=now), 2)
    await directory.apply(registered, 1)

    assert await directory.members(user_id) == []


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"Authorization": "Bearer not.a.token"}, "invalid_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
    ],
)
async def test_me_without_a_valid_token_is_401(
    directory: Directory, headers: dict[str, str], code: str
) -> None:
    response = await directory.client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.json()["detail"]["code"] == code


async def test_a_token_for_another_audience_is_refused(
    directory: Directory, isolated_auth_settings: AuthSettings
) -> None:
    _, _, token = await directory.signed_up()
    strict = JwksVerifier(
        directory.verifier.jwks_url,
        issuer=isolated_auth_settings.jwt_issuer,
        audience="another-service",
        http=directory.auth,
    )
    with pytest.raises(TokenRejectedError, match="audience"):
        await strict.verify(token)
