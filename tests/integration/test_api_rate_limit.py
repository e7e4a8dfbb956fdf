"""Brute-force limits over HTTP: 429 with Retry-After before any hashing; 503 without Redis."""

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from auth.bootstrap import Overrides
from auth.domain.passwords import BcryptPasswordHasher
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, login_pair, register

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


class CountingHasher(BcryptPasswordHasher):
    """The real hasher, counting how often a password is checked."""

    verifications = 0

    async def verify(self, password: str, password_hash: str | None) -> bool:
        self.verifications += 1
        return await super().verify(password, password_hash)


@pytest.fixture
def hasher(auth_settings: AuthSettings) -> CountingHasher:
    """A counting hasher at the test cost."""
    return CountingHasher(auth_settings.bcrypt_rounds, 2)


@pytest.fixture
async def client(
    auth_settings: AuthSettings, hasher: CountingHasher
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, its hasher counted."""
    async with api_client(auth_settings, Overrides(hasher=hasher)) as client:
        yield client


async def attempt(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    """POST /auth/login."""
    return await client.post("/auth/login", json={"username": username, "password": password})


async def test_the_sixth_attempt_after_five_failures_is_429_before_any_hashing(
    client: httpx.AsyncClient, hasher: CountingHasher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="userbus.audit")
    username = unique_username()
    await register(client, username)
    for _ in range(5):
        assert (await attempt(client, username, "wrong password")).status_code == 401
    checked = hasher.verifications
    locked = await attempt(client, username, PASSWORD)  # even the right password
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 900
    assert locked.json()["detail"]["code"] == "too_many_attempts"
    assert hasher.verifications == checked  # refused before bcrypt ran
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "userbus.audit"]
    assert [e["event"] for e in audit].count("login_failed") == 5
    assert "login_locked" in [e["event"] for e in audit]
    assert all("wrong password" not in r.getMessage() for r in caplog.records)


async def test_a_lockout_is_per_username(client: httpx.AsyncClient) -> None:
    target, bystander = unique_username(), unique_username()
    await register(client, target)
    await register(client, bystander)
    for _ in range(5):
        await attempt(client, target, "wrong password")
    assert (await attempt(client, target.upper(), PASSWORD)).status_code == 429
    await login_pair(client, bystander)


async def test_a_success_clears_the_username_counter(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    for _ in range(4):
        await attempt(client, username, "wrong password")
    await login_pair(client, username)
    for _ in range(4):
        assert (await attempt(client, username, "wrong password")).status_code == 401


async def test_one_address_guessing_many_usernames_is_limited(auth_settings: AuthSettings) -> None:
    strict = auth_settings.model_copy(update={"login_limit_per_address": 3})
    async with api_client(strict) as client:
        for _ in range(3):
            await attempt(client, unique_username(), "wrong password")
        response = await attempt(client, unique_username(), "wrong password")
        assert response.status_code == 429


async def test_guessing_the_old_password_counts_against_the_limit(
    client: httpx.AsyncClient,
) -> None:
    username = unique_username()
    await register(client, username)
    body = {"username": username, "old_password": "wrong password", "new_password": "x" * 20}
    for _ in range(5):
        assert (await client.post("/auth/password", json=body)).status_code == 401
    assert (await client.post("/auth/password", json=body)).status_code == 429


async def test_without_redis_logins_fail_closed_with_503(auth_settings: AuthSettings) -> None:
    username = unique_username()
    async with api_client(auth_settings) as client:
        # Registered while Redis is there: without it, registration fails closed too.
        await register(client, username)
    no_redis = auth_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with api_client(no_redis) as client:
        response = await attempt(client, username, PASSWORD)
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "rate_limiter_unavailable"
        assert "retry-after" in response.headers
