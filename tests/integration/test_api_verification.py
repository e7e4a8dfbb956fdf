"""Email verification over HTTP: tokens mailed at registration and on an email change,
confirmed once, and the deployment that refuses logins until an address is verified."""

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.settings import AuthSettings
from infra.mail import FileMailbox
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, broker_events, eventually, login

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


def verification_tokens(mailbox: Path, to: str) -> list[str]:
    """The verification tokens mailed to `to`, oldest first."""
    mails = FileMailbox(mailbox, "test@userbus").messages()
    bodies = [str(mail.get_content()) for mail in mails if mail["To"] == to]
    return [m for body in bodies for m in re.findall(r"verification token:\s+(\S+)", body)]


async def sign_up(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    """Register `username` with the address `<username>@example.com`."""
    response = await client.post(
        "/users",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def claims(token: str) -> dict[str, Any]:
    """The claims of a JWT (its signature is the API's business, not this test's)."""
    payload = token.split(".")[1]
    parsed: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return parsed


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


async def test_registration_mails_a_token_that_verifies_the_address_once(
    client: httpx.AsyncClient, auth_settings: AuthSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    username = unique_username()
    user = await sign_up(client, username)
    assert user["email_verified"] is False
    before = await login(client, username)
    assert claims(before)["email_verified"] is False
    [token] = verification_tokens(auth_settings.mailbox_path, f"{username}@example.com")

    confirmed = await client.post("/auth/verify-email/confirm", json={"token": token})
    assert confirmed.status_code == 204, confirmed.text
    me = await client.get("/users/me", headers=bearer(before))
    assert me.json()["email_verified"] is True
    assert claims(await login(client, username))["email_verified"] is True

    again = await client.post("/auth/verify-email/confirm", json={"token": token})
    assert again.status_code == 400
    assert again.json()["detail"]["code"] == "invalid_verification_token"
    assert all(token not in record.getMessage() for record in caplog.records)


async def test_an_expired_or_unknown_token_is_400(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await sign_up(client, username)
    [token] = verification_tokens(auth_settings.mailbox_path, f"{username}@example.com")
    engine = create_async_engine(auth_settings.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE auth.email_verifications SET expires_at = now() - interval '1 second' "
                "WHERE user_id = (SELECT id FROM auth.users WHERE username = :u)"
            ),
            {"u": username},
        )
    await engine.dispose()
    for candidate in (token, "never-issued"):
        response = await client.post("/auth/verify-email/confirm", json={"token": candidate})
        assert response.status_code == 400
        assert response.json()["detail"]["code"] == "invalid_verification_token"
    assert (await client.post("/auth/verify-email/confirm", json={})).status_code == 422


async def test_an_email_change_unverifies_and_mails_the_new_address(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await sign_up(client, username)
    mailbox = auth_settings.mailbox_path
    [first] = verification_tokens(mailbox, f"{username}@example.com")
    await client.post("/auth/verify-email/confirm", json={"token": first})
    # A token for the old address, mailed before the change, must verify nothing after it.
    token = await login(client, username)
    await client.post("/auth/verify-email/request", headers=bearer(token), json={})
    assert verification_tokens(mailbox, f"{username}@example.com") == [first]  # verified: none

    new = f"{username}@example.org"
    changed = await client.put(f"/users/{username}", headers=bearer(token), json={"email": new})
    assert changed.status_code == 200, changed.text
    assert changed.json()["email_verified"] is False
    [fresh] = verification_tokens(mailbox, new)
    assert (
        await client.post("/auth/verify-email/confirm", json={"token": fresh})
    ).status_code == 204
    me = await client.get("/users/me", headers=bearer(token))
    assert me.json()["email_verified"] is True


async def test_a_token_mailed_to_an_old_address_verifies_nothing(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await sign_up(client, username)
    [old] = verification_tokens(auth_settings.mailbox_path, f"{username}@example.com")
    token = await login(client, username)
    new = f"{username}@example.net"
    await client.put(f"/users/{username}", headers=bearer(token), json={"email": new})
    response = await client.post("/auth/verify-email/confirm", json={"token": old})
    assert response.status_code == 400
    me = await client.get("/users/me", headers=bearer(token))
    assert me.json()["email_verified"] is False


async def test_asking_again_mails_a_new_token_and_the_older_one_stops_working(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await sign_up(client, username)
    email = f"{username}@example.com"
    # Anonymously, by address (an account that cannot log in yet has no token to send).
    assert (
        await client.post("/auth/verify-email/request", json={"email": email})
    ).status_code == 202
    first, second = verification_tokens(auth_settings.mailbox_path, email)
    assert (
        await client.post("/auth/verify-email/confirm", json={"token": first})
    ).status_code == 400
    assert (
        await client.post("/auth/verify-email/confirm", json={"token": second})
    ).status_code == 204


async def test_a_bearer_request_is_for_the_callers_own_address(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await sign_up(client, username)
    token = await login(client, username)
    other = await client.post(
        "/auth/verify-email/request", headers=bearer(token), json={"email": "other@example.com"}
    )
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["body", "email"]
    own = await client.post("/auth/verify-email/request", headers=bearer(token), json={})
    assert own.status_code == 202
    assert len(verification_tokens(auth_settings.mailbox_path, f"{username}@example.com")) == 2
    anonymous = await client.post("/auth/verify-email/request", json={})
    assert anonymous.status_code == 422


async def test_unknown_and_verified_addresses_get_the_same_answer_and_no_mail(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await sign_up(client, username)
    email = f"{username}@example.com"
    [token] = verification_tokens(auth_settings.mailbox_path, email)
    await client.post("/auth/verify-email/confirm", json={"token": token})
    unknown_address = f"{unique_username('nobody')}@example.com"
    answers = [
        await client.post("/auth/verify-email/request", json={"email": address})
        for address in (email, unknown_address)
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].content == answers[1].content == b""
    assert answers[0].headers.keys() == answers[1].headers.keys()
    assert verification_tokens(auth_settings.mailbox_path, email) == [token]
    assert verification_tokens(auth_settings.mailbox_path, unknown_address) == []


@pytest.fixture
async def strict(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that refuses logins until the address is verified."""
    settings = auth_settings.model_copy(update={"require_verified_email": True})
    async with api_client(settings) as client:
        yield client


async def _login_paths(
    client: httpx.AsyncClient, username: str, password: str
) -> dict[str, httpx.Response]:
    credentials = {"username": username, "password": password}
    return {
        "/auth/login": await client.post("/auth/login", json=credentials),
        "/users/authenticate": await client.post("/users/authenticate", json=credentials),
        "/auth/token": await client.post("/auth/token", data=credentials),
        "/auth/basic": await client.get("/auth/basic", auth=(username, password)),
    }


async def test_required_verification_refuses_every_login_path_only_with_the_right_password(
    strict: httpx.AsyncClient, auth_settings: AuthSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="userbus.audit")
    username = unique_username()
    await sign_up(strict, username)

    for path, response in (await _login_paths(strict, username, "not the password")).items():
        assert response.status_code == 401, path
        assert response.json()["detail"]["code"] == "invalid_credentials", path
    for path, response in (await _login_paths(strict, username, PASSWORD)).items():
        assert response.status_code == 403, (path, response.text)
        assert response.json()["detail"]["code"] == "email_not_verified", path
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "userbus.audit"]
    assert any(e.get("reason") == "email_not_verified" for e in audit)

    [token] = verification_tokens(auth_settings.mailbox_path, f"{username}@example.com")
    assert (
        await strict.post("/auth/verify-email/confirm", json={"token": token})
    ).status_code == 204
    for path, response in (await _login_paths(strict, username, PASSWORD)).items():
        assert response.status_code == 200, (path, response.text)


async def test_the_verified_event_reaches_the_stream_without_the_token(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    stop = asyncio.Event()
    relay_settings = RelaySettings(
        database_url=isolated_database_url, broker_url=redis_url, stream=stream
    )
    relay = asyncio.create_task(create_relay(relay_settings).run(stop))
    try:
        async with api_client(isolated_auth_settings) as client:
            username = unique_username()
            user = await sign_up(client, username)
            mailbox = isolated_auth_settings.mailbox_path
            [token] = verification_tokens(mailbox, f"{username}@example.com")
            await client.post("/auth/verify-email/confirm", json={"token": token})
            access = await login(client, username)
            new = f"{username}@example.org"
            await client.put(f"/users/{username}", headers=bearer(access), json={"email": new})
            [second] = verification_tokens(mailbox, new)

        async def all_there() -> bool:
            return len(await broker_events(redis_url, stream)) == 3

        await eventually(all_there)
    finally:
        stop.set()
        await relay
    events = await broker_events(redis_url, stream)
    assert [e["type"] for e in events] == ["UserRegistered", "UserEmailVerified", "UserUpdated"]
    assert events[0]["data"]["email_verified"] is False
    assert events[1]["data"] == {
        "user_id": user["id"],
        "email": f"{username}@example.com",
        "verified_at": events[1]["data"]["verified_at"],
    }
    assert events[2]["data"]["email_verified"] is False
    assert events[2]["data"]["email"] == new
    assert all(t not in json.dumps(events) for t in (token, second))
