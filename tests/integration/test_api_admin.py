"""Roles and admin user management over HTTP; no admin operation is open to a user."""

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.main import create_app
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, login_pair, register
from userbus.admin import create_first_admin

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


async def make_admin(client: httpx.AsyncClient, settings: AuthSettings) -> tuple[str, str]:
    """A new admin (as `userbus users create-admin` makes one): (username, access token)."""
    name = unique_username("admin")
    await create_first_admin(
        settings, username=name, email=f"{name}@example.com", password=PASSWORD
    )
    return name, (await login_pair(client, name))["access_token"]


@pytest.fixture
async def admin(client: httpx.AsyncClient, auth_settings: AuthSettings) -> tuple[str, str]:
    """An admin's username and access token."""
    return await make_admin(client, auth_settings)


@pytest.fixture
async def user(client: httpx.AsyncClient) -> tuple[str, str]:
    """A regular user's username and access token."""
    name = unique_username()
    await register(client, name)
    return name, (await login_pair(client, name))["access_token"]


async def outbox_types(settings: AuthSettings, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of the user's events in order."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT type, payload FROM auth.outbox WHERE subject = :id ORDER BY id"),
                {"id": user_id},
            )
            return [(row.type, row.payload["data"]) for row in rows]
    finally:
        await engine.dispose()


async def test_an_admin_may_create_another_admin_and_a_user_may_not(
    client: httpx.AsyncClient, admin: tuple[str, str], user: tuple[str, str]
) -> None:
    name = unique_username()
    body = {"username": name, "email": f"{name}@x.org", "password": PASSWORD, "role": "admin"}
    anonymous = await client.post("/users", json=body)
    as_user = await client.post("/users", json=body, headers=bearer(user[1]))
    assert anonymous.status_code == as_user.status_code == 403
    as_admin = await client.post("/users", json=body, headers=bearer(admin[1]))
    assert as_admin.status_code == 201
    assert as_admin.json()["role"] == "admin"


async def test_users_see_themselves_and_admins_see_everyone(
    client: httpx.AsyncClient, admin: tuple[str, str], user: tuple[str, str]
) -> None:
    name, token = user
    mine = await client.get("/users/me", headers=bearer(token))
    assert mine.status_code == 200
    assert mine.json()["username"] == name
    assert (await client.get(f"/users/{name}", headers=bearer(token))).status_code == 200
    assert (await client.get(f"/users/{admin[0]}", headers=bearer(token))).status_code == 403
    ghost = unique_username()
    assert (await client.get(f"/users/{ghost}", headers=bearer(token))).status_code == 403
    assert (await client.get(f"/users/{name}", headers=bearer(admin[1]))).status_code == 200
    assert (await client.get(f"/users/{ghost}", headers=bearer(admin[1]))).status_code == 404


async def test_admins_page_through_all_users_with_an_opaque_cursor(
    client: httpx.AsyncClient, admin: tuple[str, str]
) -> None:
    for _ in range(5):
        await register(client, unique_username())
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/users", params=params, headers=bearer(admin[1]))
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["username"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 6
    assert seen == sorted(seen, key=str.lower)
    for bad in ({"limit": 0}, {"limit": 501}, {"cursor": "garbage!"}):
        response = await client.get("/users", params=bad, headers=bearer(admin[1]))
        assert response.status_code in (400, 422), bad


async def test_a_user_updates_their_profile_and_only_changes_become_events(
    client: httpx.AsyncClient, user: tuple[str, str], auth_settings: AuthSettings
) -> None:
    name, token = user
    response = await client.put(
        f"/users/{name}", json={"display_name": "Ada"}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.json()["display_name"] == "Ada"
    same = await client.put(f"/users/{name}", json={"display_name": "Ada"}, headers=bearer(token))
    assert same.status_code == 200
    cleared = await client.put(f"/users/{name}", json={"display_name": None}, headers=bearer(token))
    assert cleared.json()["display_name"] is None
    events = await outbox_types(auth_settings, response.json()["id"])
    updates = [data for kind, data in events if kind == "UserUpdated"]
    assert len(updates) == 2  # the no-op change recorded nothing
    assert "email" not in updates[0]
    assert updates[0]["display_name"] == "Ada"
    assert updates[1]["display_name"] is None


async def test_an_email_change_to_a_taken_address_is_409(
    client: httpx.AsyncClient, user: tuple[str, str], admin: tuple[str, str]
) -> None:
    name, token = user
    taken = f"{admin[0]}@example.com".upper()
    response = await client.put(f"/users/{name}", json={"email": taken}, headers=bearer(token))
    assert response.status_code == 409
    assert response.json()["detail"]["code"] == "email_taken"


async def test_only_an_admin_changes_roles_and_the_change_is_an_event(
    client: httpx.AsyncClient,
    user: tuple[str, str],
    admin: tuple[str, str],
    auth_settings: AuthSettings,
) -> None:
    name, token = user
    promote = {"role": "admin"}
    assert (
        await client.put(f"/users/{name}", json=promote, headers=bearer(token))
    ).status_code == 403
    response = await client.put(f"/users/{name}", json=promote, headers=bearer(admin[1]))
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    events = await outbox_types(auth_settings, response.json()["id"])
    assert ("UserRoleChanged", events[-1][1]) == events[-1]
    assert events[-1][1]["old_role"] == "user"
    assert events[-1][1]["new_role"] == "admin"


async def test_disabling_a_user_ends_their_sessions_at_once(
    client: httpx.AsyncClient, user: tuple[str, str], admin: tuple[str, str]
) -> None:
    name, _ = user
    session = await login_pair(client, name)
    response = await client.put(
        f"/users/{name}", json={"status": "disabled"}, headers=bearer(admin[1])
    )
    assert response.status_code == 200
    assert (
        await client.get("/users/me", headers=bearer(session["access_token"]))
    ).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refresh.status_code == 401
    login = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 401
    enabled = await client.put(
        f"/users/{name}", json={"status": "active"}, headers=bearer(admin[1])
    )
    assert enabled.status_code == 200
    await login_pair(client, name)


async def test_an_admin_deletes_a_user_and_their_refresh_tokens_stop_at_once(
    client: httpx.AsyncClient, user: tuple[str, str], admin: tuple[str, str]
) -> None:
    name, _ = user
    session = await login_pair(client, name)
    assert (await client.delete(f"/users/{name}", headers=bearer(admin[1]))).status_code == 204
    refresh = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refresh.status_code == 401
    ghost = await client.delete(f"/users/{unique_username()}", headers=bearer(admin[1]))
    assert ghost.status_code == 404


async def test_the_last_active_admin_cannot_be_demoted_disabled_or_deleted(
    isolated_auth_settings: AuthSettings,
) -> None:
    async with api_client(isolated_auth_settings) as client:
        name, token = await make_admin(client, isolated_auth_settings)
        for method, body in (("PUT", {"role": "user"}), ("PUT", {"status": "disabled"})):
            response = await client.request(
                method, f"/users/{name}", json=body, headers=bearer(token)
            )
            assert response.status_code == 409
            assert response.json()["detail"]["code"] == "last_admin"
        assert (await client.delete(f"/users/{name}", headers=bearer(token))).status_code == 409
        await make_admin(client, isolated_auth_settings)  # a second admin
        demoted = await client.put(f"/users/{name}", json={"role": "user"}, headers=bearer(token))
        assert demoted.status_code == 200


# Routes anyone may call, and routes for one's own account: everything else is admin-only.
PUBLIC = {
    ("POST", "/users"), ("POST", "/users/authenticate"), ("POST", "/auth/login"),
    ("POST", "/auth/token"), ("GET", "/auth/basic"), ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"), ("POST", "/auth/password"), ("POST", "/auth/password-reset"),
    ("POST", "/auth/password-reset/confirm"), ("GET", "/.well-known/jwks.json"),
    ("GET", "/healthz"), ("GET", "/livez"), ("GET", "/readyz"),
    ("POST", "/auth/mfa/verify"), ("POST", "/auth/verify-email/request"),
    ("POST", "/auth/verify-email/confirm"),
}  # fmt: skip
OWN_ACCOUNT = {
    ("GET", "/users/me"), ("POST", "/auth/logout-all"), ("GET", "/users/{username}"),
    ("PUT", "/users/{username}"), ("DELETE", "/users/{username}"),
    ("GET", "/auth/sessions"), ("DELETE", "/auth/sessions/{session_id}"),
    ("POST", "/auth/mfa/totp"), ("POST", "/auth/mfa/totp/confirm"), ("DELETE", "/auth/mfa/totp"),
    ("POST", "/auth/mfa/recovery-codes"),
}  # fmt: skip
ADMIN_ONLY = {
    ("GET", "/users"), ("GET", "/users/{username}/sessions"),
    ("DELETE", "/users/{username}/sessions/{session_id}"), ("DELETE", "/users/{username}/mfa"),
}  # fmt: skip
# The event feed: service tokens only (tests/integration/test_feed_api.py); users get 403.
SERVICE_ONLY = {("GET", "/events"), ("GET", "/events/head"), ("GET", "/events/users/{user_id}")}
ADMIN_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/users/{username}"): {"role": "admin"},
}


def routes(settings: AuthSettings) -> set[tuple[str, str]]:
    """Every (method, path) of the API, as its OpenAPI document lists them."""
    paths = create_app(settings).openapi()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_route_is_classified(auth_settings: AuthSettings) -> None:
    # A new route must be put in one of the sets above, so the walk below covers it.
    assert routes(auth_settings) == PUBLIC | OWN_ACCOUNT | ADMIN_ONLY | SERVICE_ONLY


async def test_a_user_token_reaches_no_admin_operation_and_an_admin_token_reaches_all(
    client: httpx.AsyncClient,
    auth_settings: AuthSettings,
    admin: tuple[str, str],
    user: tuple[str, str],
) -> None:
    victim = unique_username("victim")
    await register(client, victim)
    for method, path in sorted(routes(auth_settings) - PUBLIC - SERVICE_ONLY):
        # A user acting on someone else's account, or on an admin-only route.
        url = re.sub(r"\{username\}", victim, path).replace("{session_id}", str(uuid.uuid4()))
        body = ADMIN_BODIES.get((method, path), {"display_name": "x"} if method == "PUT" else None)
        if (method == "GET" and path == "/users/me") or path.startswith("/auth/"):
            continue  # only about the caller (/auth/...: sessions, MFA): nothing to escalate
        as_user = await client.request(method, url, json=body, headers=bearer(user[1]))
        assert as_user.status_code == 403, (method, path, as_user.text)
        assert victim not in as_user.text
        if method != "DELETE":
            as_admin = await client.request(method, url, json=body, headers=bearer(admin[1]))
            assert as_admin.status_code == 200, (method, path, as_admin.text)
    # A user's own-account variants of the same routes do work.
    own = user[0]
    assert (await client.get(f"/users/{own}", headers=bearer(user[1]))).status_code == 200
    own_role = await client.put(f"/users/{own}", json={"role": "admin"}, headers=bearer(user[1]))
    assert own_role.status_code == 403
    assert (await client.delete(f"/users/{victim}", headers=bearer(admin[1]))).status_code == 204
