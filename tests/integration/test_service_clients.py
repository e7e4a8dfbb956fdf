"""Service clients: `userbus service ...`, and the client-credentials grant of POST /auth/token."""

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import jwt
import pytest
from typer.testing import CliRunner

from auth.main import create_app
from auth.settings import AuthSettings
from infra.settings import asyncpg_dsn
from tests.conftest import unique_username
from tests.integration.feed_helpers import new_service_client, service_token
from tests.integration.helpers import api_client, bearer, register
from userbus.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session's database."""
    async with api_client(auth_settings) as client:
        yield client


@pytest.fixture
async def credentials(auth_settings: AuthSettings) -> tuple[str, str]:
    """A new service client's id and secret."""
    return await new_service_client(auth_settings)


async def test_client_credentials_in_basic_or_in_the_form_give_a_service_token(
    client: httpx.AsyncClient, credentials: tuple[str, str], auth_settings: AuthSettings
) -> None:
    client_id, secret = credentials
    grant = {"grant_type": "client_credentials"}
    basic = await client.post("/auth/token", data=grant, auth=(client_id, secret))
    form = await client.post(
        "/auth/token", data={**grant, "client_id": client_id, "client_secret": secret}
    )
    for response in (basic, form):
        assert response.status_code == 200, response.text
        body = response.json()
        # RFC 6749 4.4.3: no refresh token; the client asks again.
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert body["token_type"] == "bearer"
        assert body["scope"] == "events:read"
        assert body["expires_in"] == auth_settings.service_token_ttl_seconds
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["aud"] == auth_settings.feed_audience
        assert claims["sub"] == claims["client_id"] == client_id
        assert claims["role"] == "service"
        assert secret not in response.text.replace(body["access_token"], "")


async def test_wrong_unknown_and_missing_client_credentials_are_one_401(
    client: httpx.AsyncClient, credentials: tuple[str, str]
) -> None:
    client_id, secret = credentials
    grant = {"grant_type": "client_credentials"}
    attempts = [
        await client.post("/auth/token", data=grant, auth=(client_id, secret + "x")),
        await client.post("/auth/token", data=grant, auth=(uuid.uuid4().hex, secret)),
        await client.post("/auth/token", data=grant),
        await client.post("/auth/token", data={**grant, "client_id": client_id}),
        # One authentication method per request (RFC 6749 2.3).
        await client.post(
            "/auth/token",
            data={**grant, "client_id": client_id, "client_secret": secret},
            auth=(client_id, secret),
        ),
    ]
    for response in attempts:
        assert response.status_code == 401
        assert response.json()["detail"]["code"] == "invalid_client"
        assert secret not in response.text


async def test_a_service_token_is_no_users_token(
    client: httpx.AsyncClient, credentials: tuple[str, str]
) -> None:
    token = await service_token(client, *credentials)
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/users", headers=bearer(token))).status_code == 401
    assert (await client.post("/auth/logout-all", headers=bearer(token))).status_code == 401


async def test_the_password_grant_still_needs_username_and_password(
    client: httpx.AsyncClient,
) -> None:
    name = unique_username()
    await register(client, name)
    ok = await client.post("/auth/token", data={"username": name, "password": "a long passphrase"})
    assert ok.status_code == 200
    assert "refresh_token" in ok.json()
    missing = await client.post(
        "/auth/token", data={"username": name, "client_secret": "do not echo"}
    )
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "password"]
    assert "do not echo" not in missing.text
    unknown = await client.post("/auth/token", data={"grant_type": "implicit"})
    assert unknown.status_code == 422


def test_the_openapi_document_shows_the_feed_and_its_security(auth_settings: AuthSettings) -> None:
    document = create_app(auth_settings).openapi()
    scheme = document["components"]["securitySchemes"]["ServiceClientCredentials"]
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "/auth/token"
    for path in ("/events", "/events/head", "/events/users/{user_id}"):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{"ServiceClientCredentials": ["events:read"]}]
        assert {"401", "403"} <= set(operation["responses"])
    params = {p["name"] for p in document["paths"]["/events"]["get"]["parameters"]}
    assert params == {"after", "limit", "wait"}


async def _stored(database_url: str, client_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row: asyncpg.Record = await conn.fetchrow(
            "SELECT * FROM auth.service_clients WHERE client_id = $1", client_id
        )
        return row
    finally:
        await conn.close()


def _cli(monkeypatch: pytest.MonkeyPatch, database_url: str, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("USERBUS_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["service", *args])
    return result.exit_code, result.output


def test_service_commands_create_list_and_revoke(
    monkeypatch: pytest.MonkeyPatch, isolated_database_url: str
) -> None:
    code, output = _cli(monkeypatch, isolated_database_url, "list")
    assert (code, output.strip()) == (0, "no service clients")
    code, output = _cli(monkeypatch, isolated_database_url, "create", "profiles")
    assert code == 0, output
    fields = dict(line.split(":", 1) for line in output.splitlines() if ":" in line[:15])
    client_id, secret = fields["client_id"].strip(), fields["client_secret"].strip()
    assert len(secret) >= 43
    assert fields["scope"].strip() == "events:read"
    # Only the secret's digest is kept.
    row = asyncio.run(_stored(isolated_database_url, client_id))
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).digest()
    assert secret not in repr(dict(row))
    # A second active client of one name is refused; the secret is never shown again.
    code, output = _cli(monkeypatch, isolated_database_url, "create", "Profiles")
    assert code == 1
    assert "already exists" in output
    code, output = _cli(monkeypatch, isolated_database_url, "list")
    assert code == 0
    assert client_id in output
    assert "active" in output
    assert secret not in output
    code, output = _cli(monkeypatch, isolated_database_url, "revoke", "profiles")
    assert (code, output.strip()) == (0, f"revoked profiles ({client_id})")
    code, output = _cli(monkeypatch, isolated_database_url, "list")
    assert "revoked" in output
    code, output = _cli(monkeypatch, isolated_database_url, "revoke", "profiles")
    assert code == 1
    assert "no active service client" in output
    # A revoked name may be issued again (rotation: create the new one, then revoke the old).
    code, output = _cli(monkeypatch, isolated_database_url, "create", "profiles")
    assert code == 0
    assert client_id not in output
    code, output = _cli(monkeypatch, isolated_database_url, "create", "no spaces")
    assert code == 1
    assert "service name" in output
