"""Helpers of the integration tests: an in-process API client, stream reading, waiting."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as redis

from auth.main import Overrides, create_app
from auth.settings import AuthSettings
from events.wire import STREAM_FIELD


@asynccontextmanager
async def api_client(
    settings: AuthSettings, overrides: Overrides | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real app (lifespan included), without a socket."""
    app = create_app(settings, overrides or Overrides())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://userbus") as client:
            yield client


async def stream_events(redis_url: str, stream: str) -> list[dict[str, Any]]:
    """Every envelope on the stream, in stream order, parsed from its JSON field."""
    client = redis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in entries]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until `check()` is true; fail the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def register(
    client: httpx.AsyncClient, username: str, password: str = "a long passphrase"
) -> dict[str, Any]:
    """Register a user through the API and return its body."""
    response = await client.post(
        "/users",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    client: httpx.AsyncClient, username: str, password: str = "a long passphrase"
) -> str:
    """Log in through the API and return the access token."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def login_pair(
    client: httpx.AsyncClient, username: str, password: str = "a long passphrase"
) -> dict[str, Any]:
    """Log in and return the whole token response (access and refresh token)."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}
