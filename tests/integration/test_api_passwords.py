"""Password policy and password reset over HTTP, with the file mailbox and a real server."""

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.bootstrap import Overrides
from auth.main import create_app
from auth.settings import AuthSettings
from infra.mail import FileMailbox, Message
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, eventually, login_pair, register

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


def reset_tokens(mailbox: Path, to: str) -> list[str]:
    """The reset tokens mailed to `to`, oldest first."""
    mails = FileMailbox(mailbox, "test@userbus").messages()
    bodies = [str(mail.get_content()) for mail in mails if mail["To"] == to]
    # The same address also gets verification mails (registration): those hold no reset token.
    return [token for body in bodies for token in re.findall(r"reset token:\s+(\S+)", body)]


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password123", "too common"),
        ("iloveyou", "too common"),
        ("{username}-rocks", "username"),
        ("mail-{local}-9", "email"),
        ("short", "at least 8"),
        ("é" * 37, "72 bytes"),
    ],
)
async def test_weak_passwords_are_refused_with_a_reason(
    client: httpx.AsyncClient, password: str, why: str
) -> None:
    username = unique_username()
    local = f"mbox{username[-6:]}"
    body = {
        "username": username,
        "email": f"{local}@example.com",
        "password": password.format(username=username, local=local),
    }
    response = await client.post("/users", json=body)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "password"]
    assert why in error["msg"]
    assert body["password"] not in response.text


async def test_a_new_password_is_checked_against_the_policy_too(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    response = await client.post(
        "/auth/password",
        json={"username": username, "old_password": PASSWORD, "new_password": "sunshine1"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "new_password"]


async def test_a_reset_request_is_202_for_known_and_unknown_addresses_alike(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await register(client, username)
    known = await client.post("/auth/password-reset", json={"email": f"{username}@example.com"})
    unknown = await client.post("/auth/password-reset", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert len(reset_tokens(auth_settings.mailbox_path, f"{username}@example.com")) == 1
    assert reset_tokens(auth_settings.mailbox_path, "nobody@example.com") == []
    bad = await client.post("/auth/password-reset", json={"email": "not an email"})
    assert bad.status_code == 422


async def test_a_reset_token_sets_the_password_once_and_ends_every_session(
    client: httpx.AsyncClient, auth_settings: AuthSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    username = unique_username()
    user = await register(client, username)
    session = await login_pair(client, username)
    await client.post("/auth/password-reset", json={"email": f"{username}@example.com"})
    [token] = reset_tokens(auth_settings.mailbox_path, f"{username}@example.com")

    confirm = {"token": token, "new_password": "a fresh passphrase"}
    assert (await client.post("/auth/password-reset/confirm", json=confirm)).status_code == 204
    await login_pair(client, username, "a fresh passphrase")
    assert (
        await client.get("/users/me", headers=bearer(session["access_token"]))
    ).status_code == 401
    again = await client.post(
        "/auth/password-reset/confirm", json={**confirm, "new_password": "yet another phrase"}
    )
    assert again.status_code == 400
    assert again.json()["detail"]["code"] == "invalid_reset_token"

    # The token is in the mail only: not in the logs, not in any event.
    assert all(token not in record.getMessage() for record in caplog.records)
    engine = create_async_engine(auth_settings.database_url)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, payload::text AS p FROM auth.outbox WHERE subject = :id ORDER BY id"
            ),
            {"id": user["id"]},
        )
        events = [(row.type, row.p) for row in rows]
    await engine.dispose()
    assert [kind for kind, _ in events] == [
        "UserRegistered", "PasswordResetRequested", "PasswordChanged"
    ]  # fmt: skip
    assert '"reason": "reset"' in events[-1][1]
    assert all(token not in payload for _, payload in events)


async def test_only_the_latest_reset_token_works(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await register(client, username)
    for _ in range(2):
        await client.post("/auth/password-reset", json={"email": f"{username}@example.com"})
    first, second = reset_tokens(auth_settings.mailbox_path, f"{username}@example.com")
    stale = {"token": first, "new_password": "a fresh passphrase"}
    assert (await client.post("/auth/password-reset/confirm", json=stale)).status_code == 400
    fresh = {"token": second, "new_password": "a fresh passphrase"}
    assert (await client.post("/auth/password-reset/confirm", json=fresh)).status_code == 204


async def test_an_expired_or_unknown_reset_token_is_400(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await register(client, username)
    await client.post("/auth/password-reset", json={"email": f"{username}@example.com"})
    [token] = reset_tokens(auth_settings.mailbox_path, f"{username}@example.com")
    engine = create_async_engine(auth_settings.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE auth.password_resets SET expires_at = now() - interval '1 minute' "
                "WHERE user_id = (SELECT id FROM auth.users WHERE username = :u)"
            ),
            {"u": username},
        )
    await engine.dispose()
    for candidate in (token, "never-issued"):
        body = {"token": candidate, "new_password": "a fresh passphrase"}
        assert (await client.post("/auth/password-reset/confirm", json=body)).status_code == 400


class BlockingMailer:
    """A mailer that does not deliver until released: as slow as a mail server can be."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        await self.release.wait()
        self.sent.append(message)


async def test_the_reset_answer_is_sent_before_any_of_the_work(auth_settings: AuthSettings) -> None:
    mailer = BlockingMailer()
    app = create_app(auth_settings, Overrides(mailer=mailer))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server))
        username = unique_username()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await register(client, username)
            # Answered while the mail is still waiting to go out: the answer cannot depend
            # on whether the address belongs to an account.
            async with asyncio.timeout(5):
                response = await client.post(
                    "/auth/password-reset", json={"email": f"{username}@example.com"}
                )
            assert response.status_code == 202
            assert mailer.sent == []
            mailer.release.set()
            # The registration's verification mail was held up too: both go out now.
            subjects = ["Reset your password", "Verify your email address"]
            await eventually(lambda: _true(sorted(m.subject for m in mailer.sent) == subjects))
    finally:
        server.should_exit = True
        await serving


async def _started(server: uvicorn.Server) -> bool:
    return server.started


async def _true(value: bool) -> bool:
    return value
