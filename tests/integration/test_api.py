"""The HTTP API on the real PostgreSQL: status codes, bodies, and what reaches the outbox."""

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, login, register

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


async def outbox_types(settings: AuthSettings, user_id: str) -> list[tuple[int, str]]:
    """(sequence, type) of the user's events in the outbox, in order."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT sequence, type FROM auth.outbox WHERE subject = :id ORDER BY id"),
                {"id": user_id},
            )
            return [(row.sequence, row.type) for row in rows]
    finally:
        await engine.dispose()


async def test_registration_returns_the_user_without_secrets(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    body = await register(client, username)
    assert set(body) == {
        "id", "username", "email", "display_name", "role", "status", "email_verified",
        "created_at", "updated_at",
    }  # fmt: skip
    assert body["username"] == username
    assert body["role"] == "user"
    assert body["status"] == "active"
    assert await outbox_types(auth_settings, body["id"]) == [(1, "UserRegistered")]


@pytest.mark.parametrize("field", ["username", "email"])
async def test_taken_username_or_email_is_409_case_insensitively(
    client: httpx.AsyncClient, auth_settings: AuthSettings, field: str
) -> None:
    username = unique_username()
    first = await register(client, username)
    other = unique_username()
    clash = {
        "username": username.upper() if field == "username" else other,
        "email": f"{username}@EXAMPLE.com".upper() if field == "email" else f"{other}@example.com",
        "password": PASSWORD,
    }
    response = await client.post("/users", json=clash)
    assert response.status_code == 409
    assert response.json()["detail"]["code"] == f"{field}_taken"
    # The rolled-back registration left no event behind.
    assert await outbox_types(auth_settings, first["id"]) == [(1, "UserRegistered")]
    async with create_async_engine(auth_settings.database_url).connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM auth.outbox WHERE payload->'data'->>'username' = :u"),
            {"u": clash["username"]},
        )
    assert count == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ab"}, "username"),
        ({"username": "x" * 33}, "username"),
        ({"username": "bad name"}, "username"),
        ({"username": "semi;colon"}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "é" * 37}, "password"),  # 37 characters, 74 bytes: over bcrypt's 72
        ({"password": None}, "password"),
        ({"extra": "field"}, "extra"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    username = unique_username()
    payload = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    payload.update(body)
    response = await client.post("/users", json=payload)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(error["loc"][-1] == field for error in errors)


async def test_a_refused_password_is_not_echoed_in_the_error(client: httpx.AsyncClient) -> None:
    username = unique_username()
    secret = "ünïcödé-secret-" * 5
    response = await client.post(
        "/users",
        json={"username": username, "email": f"{username}@example.com", "password": secret},
    )
    assert response.status_code == 422
    assert secret not in response.text


async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_login_by_username_or_email_returns_a_bearer_token(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    for login_name in (username, f"{username}@example.com", username.upper()):
        response = await client.post(
            "/auth/login", json={"username": login_name, "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert body["access_token"].count(".") == 2


async def test_unknown_user_and_wrong_password_get_the_same_401(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    wrong = await client.post(
        "/auth/login", json={"username": username, "password": "wrong password"}
    )
    unknown = await client.post(
        "/auth/login", json={"username": unique_username(), "password": PASSWORD}
    )
    too_long = await client.post(
        "/auth/login", json={"username": username, "password": PASSWORD * 9}
    )
    assert wrong.status_code == unknown.status_code == too_long.status_code == 401
    assert wrong.json() == unknown.json() == too_long.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_password_change_swaps_the_password_and_records_an_event(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    user = await register(client, username)
    response = await client.post(
        "/auth/password",
        json={"username": username, "old_password": PASSWORD, "new_password": "another passphrase"},
    )
    assert response.status_code == 204
    await login(client, username, "another passphrase")
    old = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert old.status_code == 401
    assert await outbox_types(auth_settings, user["id"]) == [
        (1, "UserRegistered"),
        (2, "PasswordChanged"),
    ]


async def test_password_change_with_a_wrong_old_password_is_401_and_changes_nothing(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    user = await register(client, username)
    response = await client.post(
        "/auth/password",
        json={"username": username, "old_password": "not the password", "new_password": "x" * 12},
    )
    assert response.status_code == 401
    assert await outbox_types(auth_settings, user["id"]) == [(1, "UserRegistered")]
    await login(client, username)


async def test_password_change_to_a_too_short_password_is_422(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    response = await client.post(
        "/auth/password",
        json={"username": username, "old_password": PASSWORD, "new_password": "short"},
    )
    assert response.status_code == 422


async def test_user_deletes_their_own_account(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    user = await register(client, username)
    token = await login(client, username)
    response = await client.delete(
        f"/users/{username}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204
    assert await outbox_types(auth_settings, user["id"]) == [
        (1, "UserRegistered"),
        (2, "UserDeleted"),
    ]
    gone = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert gone.status_code == 401
    # The token outlives the account, but it no longer opens anything.
    again = await client.delete(f"/users/{username}", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401


async def test_deleting_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    assert (await client.delete(f"/users/{username}")).status_code == 401
    bad = await client.delete(f"/users/{username}", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert "not.a.jwt" not in bad.text


async def test_deleting_someone_else_is_403_whether_or_not_they_exist(
    client: httpx.AsyncClient,
) -> None:
    mallory = unique_username("mallory")
    victim = unique_username("victim")
    await register(client, mallory)
    await register(client, victim)
    headers = {"Authorization": f"Bearer {await login(client, mallory)}"}
    existing = await client.delete(f"/users/{victim}", headers=headers)
    missing = await client.delete(f"/users/{unique_username()}", headers=headers)
    assert existing.status_code == missing.status_code == 403
    assert existing.json() == missing.json()
    await login(client, victim)


async def test_healthz_reports_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_is_503_when_the_database_is_unreachable(auth_settings: AuthSettings) -> None:
    unreachable = auth_settings.model_copy(
        update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    )
    async with api_client(unreachable) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "database_unavailable"


async def test_the_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert {"/users", "/auth/login", "/auth/password", "/healthz"} <= set(response.json()["paths"])
