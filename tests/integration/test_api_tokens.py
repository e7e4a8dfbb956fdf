"""Access-token attacks over HTTP, the JWKS, and signing-key rotation."""

import base64
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from auth.security.tokens import generate_private_key_pem
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, login_pair, register

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


@pytest.fixture
async def claims(client: httpx.AsyncClient) -> dict[str, Any]:
    """The verified claims of a real access token of a new user."""
    username = unique_username()
    await register(client, username)
    token = (await login_pair(client, username))["access_token"]
    return jwt.decode(token, options={"verify_signature": False})


def private_key(settings: AuthSettings) -> Any:
    """The service's signing key (the tests forge tokens with it or without it)."""
    assert settings.jwt_private_key_file is not None
    return serialization.load_pem_private_key(
        settings.jwt_private_key_file.read_bytes(), password=None
    )


def kid(token_header_source: str) -> str:
    """The kid of a real token."""
    return str(jwt.get_unverified_header(token_header_source)["kid"])


def sign(claims: dict[str, Any], key: Any, *, algorithm: str = "EdDSA", kid: str) -> str:
    """A token with these claims, signed as told."""
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


async def status_with(client: httpx.AsyncClient, token: str) -> int:
    """What GET /users/me answers to this token."""
    return (await client.get("/users/me", headers=bearer(token))).status_code


async def jwks_kid(client: httpx.AsyncClient) -> str:
    """The current key's id from the JWKS."""
    return str((await client.get("/.well-known/jwks.json")).json()["keys"][0]["kid"])


async def test_a_genuine_token_is_accepted(
    client: httpx.AsyncClient, claims: dict[str, Any], auth_settings: AuthSettings
) -> None:
    token = sign(claims, private_key(auth_settings), kid=await jwks_kid(client))
    assert await status_with(client, token) == 200
    assert {"iss", "aud", "sub", "username", "role", "iat", "exp", "jti", "sid"} <= set(claims)


async def test_alg_none_is_rejected(client: httpx.AsyncClient, claims: dict[str, Any]) -> None:
    header = {"alg": "none", "typ": "JWT", "kid": await jwks_kid(client)}

    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, default=str).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    assert await status_with(client, f"{part(header)}.{part(claims)}.") == 401


async def test_hs256_signed_with_the_public_key_is_rejected(
    client: httpx.AsyncClient, claims: dict[str, Any], auth_settings: AuthSettings
) -> None:
    public_pem = (
        private_key(auth_settings)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": await jwks_kid(client)}

    # PyJWT refuses to HMAC with a PEM key, as an attacker's library would not: sign by hand.
    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part(header) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, sha256).digest())
    token = (signing_input + b"." + signature.rstrip(b"=")).decode()
    assert await status_with(client, token) == 401


async def test_a_token_signed_by_another_key_is_rejected(
    client: httpx.AsyncClient, claims: dict[str, Any]
) -> None:
    other = serialization.load_pem_private_key(generate_private_key_pem("EdDSA"), password=None)
    assert await status_with(client, sign(claims, other, kid=await jwks_kid(client))) == 401


@pytest.mark.parametrize(
    ("claim", "value"),
    [("aud", "another-service"), ("iss", "https://evil.example"), ("role", "superuser")],
)
async def test_a_token_with_a_wrong_claim_is_rejected(
    client: httpx.AsyncClient,
    claims: dict[str, Any],
    auth_settings: AuthSettings,
    claim: str,
    value: str,
) -> None:
    forged = {**claims, claim: value}
    token = sign(forged, private_key(auth_settings), kid=await jwks_kid(client))
    assert await status_with(client, token) == 401


async def test_expiry_is_enforced_with_a_small_leeway(
    client: httpx.AsyncClient, claims: dict[str, Any], auth_settings: AuthSettings
) -> None:
    key, key_id = private_key(auth_settings), await jwks_kid(client)
    now = datetime.now(UTC)
    just_expired = {**claims, "exp": now - timedelta(seconds=3)}
    long_expired = {**claims, "exp": now - timedelta(minutes=5)}
    assert await status_with(client, sign(just_expired, key, kid=key_id)) == 200
    assert await status_with(client, sign(long_expired, key, kid=key_id)) == 401


async def test_a_token_missing_a_required_claim_is_rejected(
    client: httpx.AsyncClient, claims: dict[str, Any], auth_settings: AuthSettings
) -> None:
    for missing in ("exp", "sub", "jti", "aud"):
        partial = {k: v for k, v in claims.items() if k != missing}
        token = sign(partial, private_key(auth_settings), kid=await jwks_kid(client))
        assert await status_with(client, token) == 401, missing


async def test_a_deleted_users_token_is_rejected(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    token = (await login_pair(client, username))["access_token"]
    assert (await client.delete(f"/users/{username}", headers=bearer(token))).status_code == 204
    assert await status_with(client, token) == 401


async def test_garbage_in_the_authorization_header_is_401(client: httpx.AsyncClient) -> None:
    for header in ("Bearer", "Bearer ", "Bearer a.b.c", "Token abc", "Bearer " + "x" * 5000):
        response = await client.get("/users/me", headers={"Authorization": header})
        assert response.status_code == 401, header


async def test_the_jwks_publishes_the_public_key_only(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert key["kty"] == "OKP"
    assert key["alg"] == "EdDSA"
    assert key["use"] == "sig"
    assert "d" not in key
    assert "max-age" in response.headers["cache-control"]


async def test_a_downstream_service_verifies_tokens_from_the_jwks_alone(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    await register(client, username)
    token = (await login_pair(client, username))["access_token"]
    jwks = jwt.PyJWKSet.from_dict((await client.get("/.well-known/jwks.json")).json())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token, key, algorithms=["EdDSA"], audience=auth_settings.jwt_audience,
        issuer=auth_settings.jwt_issuer,
    )  # fmt: skip
    assert claims["username"] == username


async def test_after_a_key_rotation_old_tokens_still_verify_until_they_expire(
    auth_settings: AuthSettings, tmp_path: Path
) -> None:
    username = unique_username()
    async with api_client(auth_settings) as old_app:
        await register(old_app, username)
        old_token = (await login_pair(old_app, username))["access_token"]
    # Rotate: a new signing key; the old key's public half is kept for verification.
    assert auth_settings.jwt_private_key_file is not None
    old_public = tmp_path / "previous.pem"
    old_public.write_bytes(
        private_key(auth_settings)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    new_key = tmp_path / "new.pem"
    new_key.write_bytes(generate_private_key_pem("EdDSA"))
    rotated = auth_settings.model_copy(
        update={"jwt_private_key_file": new_key, "jwt_previous_public_key_files": [old_public]}
    )
    async with api_client(rotated) as new_app:
        keys = (await new_app.get("/.well-known/jwks.json")).json()["keys"]
        assert len(keys) == 2
        assert await status_with(new_app, old_token) == 200
        new_token = (await login_pair(new_app, username))["access_token"]
        assert kid(new_token) == keys[0]["kid"] != kid(old_token)
    # Once the old key is dropped from the set, its tokens stop working.
    dropped = rotated.model_copy(update={"jwt_previous_public_key_files": []})
    async with api_client(dropped) as final_app:
        assert await status_with(final_app, old_token) == 401
