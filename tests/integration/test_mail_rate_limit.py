"""RedisMailRateLimiter on the real Redis: what it counts, what it refuses, and when it forgets."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from auth.adapters.rate_limit import (
    MailLimits,
    RateLimiterUnavailableError,
    RedisMailRateLimiter,
)
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A Redis client (each limiter has a prefix of its own; its keys expire with the window)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def limiter(client: redis.Redis, **limits: int) -> RedisMailRateLimiter:
    """A limiter with its own key prefix and the given limits."""
    given = {"per_email": 2, "per_address": 3, "registrations_per_address": 2} | limits
    return RedisMailRateLimiter(client, MailLimits(**given), prefix=f"test:mail:{uuid.uuid4().hex}")


def email() -> str:
    """An address no other test uses."""
    return f"m{uuid.uuid4().hex[:10]}@Example.com"


async def test_an_email_is_counted_casefolded_from_every_address(client: redis.Redis) -> None:
    limits = limiter(client)
    target = email()
    assert await limits.take(email=target, address="192.0.2.1") is None
    assert await limits.take(email=target.upper(), address="192.0.2.2") is None
    wait = await limits.take(email=target.lower(), address="192.0.2.3")
    assert wait is not None
    assert 0 < wait <= 3600
    assert await limits.take(email=email(), address="192.0.2.3") is None  # another email


async def test_a_refused_request_is_not_counted(client: redis.Redis) -> None:
    limits = limiter(client, per_email=1_000)
    for _ in range(3):
        assert await limits.take(email=email(), address="192.0.2.9") is None
    for _ in range(3):
        assert await limits.take(email=email(), address="192.0.2.9") is not None
    # A refusal at the address spent nothing of these emails' budgets.
    fresh = email()
    assert await limits.take(email=fresh, address="192.0.2.9") is not None
    assert await limits.take(email=fresh, address="192.0.2.10") is None


async def test_registrations_have_their_own_budget_per_address(client: redis.Redis) -> None:
    limits = limiter(client, per_email=1_000)
    for _ in range(2):
        assert await limits.take(email=email(), address="192.0.2.20", registration=True) is None
    assert await limits.take(email=email(), address="192.0.2.20", registration=True) is not None
    assert await limits.take(email=email(), address="192.0.2.20") is None  # mails: still open


async def test_the_window_ends(client: redis.Redis) -> None:
    limits = limiter(client, per_email=1, window_seconds=1)
    target = email()
    assert await limits.take(email=target, address=None) is None
    assert await limits.take(email=target, address=None) == 1
    await asyncio.sleep(1.1)
    assert await limits.take(email=target, address=None) is None


async def test_without_redis_it_says_so() -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(RateLimiterUnavailableError, match="sending mail"):
            await limiter(client).take(email=email(), address=None)
    finally:
        await client.aclose()
