"""The profile example: sparse updates, an older table upgraded, the read API, and HTTP to API."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.applier import BatchOutcome, ProjectionApplier
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.main import create_profiles_app
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, UserRegistered, UserUpdated, event_from_envelope, to_envelope
from infra.settings import DatabaseSettings
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, eventually, login

pytestmark = pytest.mark.integration

REGISTERED_AT = datetime(2026, 1, 1, tzinfo=UTC)


class History:
    """One user's events, numbered as the auth service numbers them (1, 2, 3...)."""

    def __init__(self, display_name: str | None = "Alice") -> None:
        self.user_id = uuid.uuid4()
        self.username = unique_username("Alice")
        self.email = f"{self.username}@example.com"
        self.display_name = display_name
        self.sequence = 1  # the registration's

    def registered(self) -> Envelope:
        """The registration (sequence 1)."""
        event = UserRegistered(
            user_id=self.user_id,
            username=self.username,
            email=self.email,
            role="user",
            registered_at=REGISTERED_AT,
            display_name=self.display_name,
        )
        return to_envelope(event, sequence=1, source="/test")

    def updated(self, **changed: Any) -> Envelope:
        """The next update, carrying only `changed` (as the auth service sends it: sparse)."""
        self.sequence += 1
        sequence = self.sequence
        event = UserUpdated(
            user_id=self.user_id, updated_at=REGISTERED_AT + timedelta(minutes=sequence), **changed
        )
        return to_envelope(event, sequence=sequence, source="/test")


async def apply(
    engine: AsyncEngine, applier: ProjectionApplier, *envelopes: Envelope
) -> BatchOutcome:
    """Apply envelopes as one delivered batch, as the consumer does."""
    async with engine.begin() as conn:
        return await applier.apply_batch(conn, envelopes)


async def profile_row(engine: AsyncEngine, user_id: UUID) -> dict[str, Any] | None:
    """The profile row of `user_id`, or None."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM profiles.profiles WHERE user_id = :id"), {"id": user_id}
            )
        ).mappings()
        found = row.first()
        return dict(found) if found else None


# --- the projection -------------------------------------------------------------------------


async def test_a_registration_keeps_the_display_name(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History(display_name="Alice A.")
    await apply(engine, applier, alice.registered())
    row = await profile_row(engine, alice.user_id)
    assert row is not None
    assert row["display_name"] == "Alice A."
    assert row["updated_at"] == REGISTERED_AT


async def test_an_email_update_changes_the_email_alone(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    update = alice.updated(email="new@example.com")
    assert "display_name" not in update.data  # absent, not null: the name did not change
    await apply(engine, applier, alice.registered(), update)
    row = await profile_row(engine, alice.user_id)
    assert row is not None
    assert (row["email"], row["display_name"]) == ("new@example.com", "Alice")
    assert row["updated_at"] == REGISTERED_AT + timedelta(minutes=2)


async def test_a_display_name_update_changes_the_display_name_alone(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    await apply(engine, applier, alice.registered(), alice.updated(display_name="Al"))
    row = await profile_row(engine, alice.user_id)
    assert row is not None
    assert (row["email"], row["display_name"]) == (alice.email, "Al")


async def test_a_display_name_present_as_null_is_cleared(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    cleared = alice.updated(display_name=None)
    assert cleared.data["display_name"] is None
    await apply(engine, applier, alice.registered(), cleared)
    row = await profile_row(engine, alice.user_id)
    assert row is not None
    assert (row["email"], row["display_name"]) == (alice.email, None)


async def test_a_redelivered_update_changes_nothing(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    first, second = alice.updated(display_name="First"), alice.updated(display_name="Second")
    await apply(engine, applier, alice.registered(), first, second)
    before = await profile_row(engine, alice.user_id)

    outcome = await apply(engine, applier, first, second)

    assert (outcome.applied, outcome.duplicates) == (0, 2)
    assert await profile_row(engine, alice.user_id) == before
    assert before is not None
    assert before["display_name"] == "Second"


async def test_applying_the_same_events_again_without_tracking_changes_nothing(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    # The projection is idempotent by itself too: a registration seen again after an update
    # must not bring the old name back.
    alice = History()
    registered, renamed = alice.registered(), alice.updated(display_name="Renamed")
    projection = ProfileProjection()
    async with engine.begin() as conn:
        for envelope in (registered, renamed, registered, renamed):
            await projection.apply(conn, event_from_envelope(envelope), envelope)
    row = await profile_row(engine, alice.user_id)
    assert row is not None
    assert row["display_name"] == "Renamed"


async def test_an_older_profile_table_gets_the_new_columns_and_keeps_its_rows(
    engine: AsyncEngine,
) -> None:
    # The table as the first version of this example created it.
    old_user = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA profiles"))
        await conn.execute(
            text(
                "CREATE TABLE profiles.profiles (user_id uuid PRIMARY KEY, username text NOT NULL,"
                " email text NOT NULL, registered_at timestamptz NOT NULL)"
            )
        )
        await conn.execute(
            text("INSERT INTO profiles.profiles VALUES (:id, 'old', 'old@example.com', now())"),
            {"id": old_user},
        )
    applier = ProjectionApplier(ProfileProjection())
    for _ in range(2):  # every start runs it: the second time changes nothing
        async with engine.begin() as conn:
            await applier.setup(conn)

    row = await profile_row(engine, old_user)
    assert row is not None
    assert (row["username"], row["display_name"], row["updated_at"]) == ("old", None, None)
    async with engine.connect() as conn:
        indexes = await conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE schemaname = 'profiles'")
        )
        assert "profiles_username_lower" in set(indexes.scalars())
    alice = History()
    await apply(engine, applier, alice.registered(), alice.updated(display_name="New"))
    new_row = await profile_row(engine, alice.user_id)
    assert new_row is not None
    assert new_row["display_name"] == "New"
    async with profiles_client(engine) as client:
        response = await client.get("/profiles", params={"username": "OLD"})
    assert response.status_code == 200, response.text
    assert (response.json()["user_id"], response.json()["display_name"]) == (str(old_user), None)


# --- the read API ---------------------------------------------------------------------------


@asynccontextmanager
async def profiles_client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the profile read API (lifespan included) on `engine`'s database."""
    settings = DatabaseSettings(database_url=engine.url.render_as_string(hide_password=False))
    app = create_profiles_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://profiles") as client:
            yield client


@pytest.fixture
async def client(
    engine: AsyncEngine, applier: ProjectionApplier
) -> AsyncIterator[httpx.AsyncClient]:
    """The read API on this test's database, its tables created."""
    async with profiles_client(engine) as client:
        yield client


async def test_a_profile_is_read_by_user_id(
    client: httpx.AsyncClient, engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    await apply(engine, applier, alice.registered(), alice.updated(display_name="Al"))

    response = await client.get(f"/profiles/{alice.user_id}")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": str(alice.user_id),
        "username": alice.username,
        "email": alice.email,
        "display_name": "Al",
        "registered_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:02:00Z",
    }


async def test_an_unknown_user_id_is_404_profile_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/profiles/{uuid.uuid4()}")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail["code"] == "profile_not_found"
    assert detail["message"]


async def test_a_user_id_that_is_not_a_uuid_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/profiles/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]


async def test_a_profile_is_found_by_username_ignoring_case(
    client: httpx.AsyncClient, engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice, bob = History(), History()
    await apply(engine, applier, alice.registered(), bob.registered())

    for spelling in (alice.username, alice.username.lower(), alice.username.upper()):
        response = await client.get("/profiles", params={"username": spelling})
        assert response.status_code == 200, response.text
        assert response.json()["user_id"] == str(alice.user_id)


async def test_an_unknown_username_is_404_and_a_missing_one_422(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/profiles", params={"username": unique_username()})
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "profile_not_found"
    assert (await client.get("/profiles")).status_code == 422


async def test_healthz_is_ok_once_the_consumer_has_made_the_tables(engine: AsyncEngine) -> None:
    async with profiles_client(engine) as client:
        before = await client.get("/healthz")
        async with engine.begin() as conn:
            await ProjectionApplier(ProfileProjection()).setup(conn)
        after = await client.get("/healthz")
    assert before.status_code == 503
    assert before.json()["detail"]["code"] == "database_unavailable"
    assert (after.status_code, after.json()) == (200, {"status": "ok"})


# --- from HTTP to the read API, on each broker ----------------------------------------------


async def test_a_display_name_changed_over_http_reaches_the_profile_api(
    isolated_auth_settings: AuthSettings,
    relay_settings: RelaySettings,
    consumer_settings: ConsumerSettings,
    engine: AsyncEngine,
) -> None:
    stop = asyncio.Event()
    relay = asyncio.create_task(create_relay(relay_settings).run(stop))
    consumer = create_consumer_app(consumer_settings, ProfileProjection())
    await consumer.start()
    try:
        async with api_client(isolated_auth_settings) as auth, profiles_client(engine) as profiles:
            username = unique_username()
            email = f"{username}@example.com"
            response = await auth.post(
                "/users",
                json={
                    "username": username,
                    "email": email,
                    "password": "a long passphrase",
                    "display_name": "Old",
                },
            )
            assert response.status_code == 201, response.text
            user_id = response.json()["id"]

            async def shows(display_name: str) -> bool:
                response = await profiles.get(f"/profiles/{user_id}")
                return response.status_code == 200 and response.json()["display_name"] == (
                    display_name
                )

            await eventually(lambda: shows("Old"))
            token = await login(auth, username)
            response = await auth.put(
                f"/users/{username}", json={"display_name": "New"}, headers=bearer(token)
            )
            assert response.status_code == 200, response.text

            await eventually(lambda: shows("New"))
            profile = (await profiles.get(f"/profiles/{user_id}")).json()
            assert (profile["username"], profile["email"]) == (username, email)
            updated_at = datetime.fromisoformat(profile["updated_at"])
            assert updated_at > datetime.fromisoformat(profile["registered_at"])
    finally:
        await consumer.stop()
        stop.set()
        await relay
