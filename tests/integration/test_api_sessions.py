"""Sessions over HTTP: refresh rotation, theft detection, logout, and every way to log in."""

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, login_pair, register

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


@pytest.fixture
async def username(client: httpx.AsyncClient) -> str:
    """A registered user's name."""
    name = unique_username()
    await register(client, name)
    return name


async def me(client: httpx.AsyncClient, access_token: str) -> int:
    """The status of GET /users/me with this token."""
    return (await client.get("/users/me", headers=bearer(access_token))).status_code


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    """POST /auth/refresh."""
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


async def test_login_returns_an_access_and_a_refresh_token(
    client: httpx.AsyncClient, username: str
) -> None:
    pair = await login_pair(client, username)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "bearer"
    assert await me(client, pair["access_token"]) == 200


async def test_refresh_rotates_and_the_old_token_stops_working(
    client: httpx.AsyncClient, username: str
) -> None:
    first = await login_pair(client, username)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert await me(client, second["access_token"]) == 200
    third = await refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_a_reused_refresh_token_revokes_the_whole_session(
    client: httpx.AsyncClient, username: str
) -> None:
    stolen = await login_pair(client, username)
    rotated = (await refresh(client, stolen["refresh_token"])).json()
    # The thief (or the owner) presents the already-rotated token again.
    reuse = await refresh(client, stolen["refresh_token"])
    assert reuse.status_code == 401
    assert reuse.json()["detail"]["code"] == "refresh_token_reused"
    # Every token of that session is dead now, the newest included.
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401
    assert await me(client, rotated["access_token"]) == 401
    # Other sessions of the same user are untouched.
    other = await login_pair(client, username)
    assert await me(client, other["access_token"]) == 200


async def test_an_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await refresh(client, "not-a-token")
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "invalid_refresh_token"


async def test_logout_ends_that_session_only(client: httpx.AsyncClient, username: str) -> None:
    laptop = await login_pair(client, username)
    phone = await login_pair(client, username)
    response = await client.post("/auth/logout", json={"refresh_token": laptop["refresh_token"]})
    assert response.status_code == 204
    assert (await refresh(client, laptop["refresh_token"])).status_code == 401
    assert await me(client, laptop["access_token"]) == 401
    assert await me(client, phone["access_token"]) == 200
    # Logging out twice, or with a token nobody knows, says nothing about it.
    again = await client.post("/auth/logout", json={"refresh_token": laptop["refresh_token"]})
    assert again.status_code == 204


async def test_logout_all_ends_every_session(client: httpx.AsyncClient, username: str) -> None:
    sessions = [await login_pair(client, username) for _ in range(3)]
    response = await client.post("/auth/logout-all", headers=bearer(sessions[0]["access_token"]))
    assert response.status_code == 204
    for session in sessions:
        assert await me(client, session["access_token"]) == 401
        assert (await refresh(client, session["refresh_token"])).status_code == 401
    assert (await client.post("/auth/logout-all")).status_code == 401


async def test_users_authenticate_is_the_same_as_login(
    client: httpx.AsyncClient, username: str
) -> None:
    response = await client.post(
        "/users/authenticate", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert await me(client, response.json()["access_token"]) == 200
    wrong = await client.post("/users/authenticate", json={"username": username, "password": "x"})
    assert wrong.status_code == 401


async def test_the_oauth2_password_form_logs_in(client: httpx.AsyncClient, username: str) -> None:
    response = await client.post(
        "/auth/token", data={"username": username, "password": PASSWORD, "grant_type": "password"}
    )
    assert response.status_code == 200
    assert await me(client, response.json()["access_token"]) == 200
    missing = await client.post("/auth/token", data={"username": username})
    assert missing.status_code == 422


def basic(username: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_http_basic_returns_the_user_or_asks_for_basic(
    client: httpx.AsyncClient, username: str
) -> None:
    ok = await client.get("/auth/basic", headers=basic(username, PASSWORD))
    assert ok.status_code == 200
    assert ok.json()["username"] == username
    for headers in ({}, basic(username, "wrong password"), {"Authorization": "Basic !!!"}):
        response = await client.get("/auth/basic", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_password_change_by_username_ends_every_session(
    client: httpx.AsyncClient, username: str
) -> None:
    session = await login_pair(client, username)
    response = await client.post(
        "/auth/password",
        json={"username": username, "old_password": PASSWORD, "new_password": "a newer passphrase"},
    )
    assert response.status_code == 204
    assert await me(client, session["access_token"]) == 401
    assert (await refresh(client, session["refresh_token"])).status_code == 401


async def test_a_password_change_by_bearer_keeps_this_session_and_ends_the_others(
    client: httpx.AsyncClient, username: str
) -> None:
    current = await login_pair(client, username)
    other = await login_pair(client, username)
    response = await client.post(
        "/auth/password",
        json={"old_password": PASSWORD, "new_password": "a newer passphrase"},
        headers=bearer(current["access_token"]),
    )
    assert response.status_code == 204
    assert await me(client, current["access_token"]) == 200
    assert await me(client, other["access_token"]) == 401
    assert (await refresh(client, other["refresh_token"])).status_code == 401
    wrong_old = await client.post(
        "/auth/password",
        json={"old_password": PASSWORD, "new_password": "the newest passphrase"},
        headers=bearer(current["access_token"]),
    )
    assert wrong_old.status_code == 401


async def test_a_password_change_without_username_or_token_is_401(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/auth/password", json={"old_password": PASSWORD, "new_password": "a newer passphrase"}
    )
    assert response.status_code == 401
