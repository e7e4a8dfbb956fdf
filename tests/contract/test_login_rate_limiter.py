"""LoginRateLimiter: FakeLoginRateLimiter keeps the promises of RedisLoginRateLimiter."""

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import redis.asyncio as redis

from auth.adapters.rate_limit import LoginLimits, LoginRateLimiter, RedisLoginRateLimiter
from tests.conftest import unique_username
from tests.unit.fakes import FakeLoginRateLimiter

PER_USERNAME = 2
PER_ADDRESS = 3
WINDOW = 60


def locked(wait: int | None) -> bool:
    """Whether `wait` says to wait: a whole number of seconds within the window."""
    return wait is not None and 0 < wait <= WINDOW


def unique_address() -> str:
    """An address no other test uses."""
    return f"2001:db8::{uuid4().hex[:4]}"


class LoginRateLimiterContract:
    """What every LoginRateLimiter does with 2 failures per username and 3 per address."""

    @pytest.fixture
    def limiter(self) -> LoginRateLimiter:
        """The limiter under test (each subclass names one)."""
        raise NotImplementedError

    async def test_the_limit_counts_per_casefolded_username(
        self, limiter: LoginRateLimiter
    ) -> None:
        name = unique_username("Straße")

        assert await limiter.retry_after(name, None) is None
        assert await limiter.record_failure(name.upper(), unique_address()) is None
        assert locked(await limiter.record_failure(name.lower(), unique_address()))
        assert locked(await limiter.retry_after(name.replace("ß", "ss"), None))
        assert locked(await limiter.retry_after(name, unique_address()))
        assert locked(await limiter.record_failure(name, None))
        assert await limiter.retry_after(unique_username(), None) is None

    async def test_the_limit_counts_per_address_for_every_username(
        self, limiter: LoginRateLimiter
    ) -> None:
        address = unique_address()
        waits = [
            await limiter.record_failure(unique_username(), address) for _ in range(PER_ADDRESS)
        ]

        assert waits[:-1] == [None] * (PER_ADDRESS - 1)
        assert locked(waits[-1])
        newcomer = unique_username()
        assert locked(await limiter.retry_after(newcomer, address))
        assert await limiter.retry_after(newcomer, unique_address()) is None
        assert await limiter.retry_after(newcomer, None) is None

    async def test_a_success_forgets_the_username_but_not_the_address(
        self, limiter: LoginRateLimiter
    ) -> None:
        name, address = unique_username(), unique_address()
        for _ in range(PER_USERNAME):
            await limiter.record_failure(name, address)
        assert locked(await limiter.retry_after(name, None))

        await limiter.record_success(name.upper())

        assert await limiter.retry_after(name, None) is None
        # The address still counts the failures from before: one more reaches its limit.
        assert locked(await limiter.record_failure(name, address))
        assert await limiter.retry_after(name, unique_address()) is None
        assert locked(await limiter.retry_after(unique_username(), address))


class TestFakeLoginRateLimiter(LoginRateLimiterContract):
    """The contract on FakeLoginRateLimiter."""

    @pytest.fixture
    def limiter(self) -> LoginRateLimiter:
        """A fake with the contract's limits."""
        return FakeLoginRateLimiter(
            per_username=PER_USERNAME, per_address=PER_ADDRESS, wait_seconds=WINDOW
        )


@pytest.mark.integration
@pytest.mark.redis
class TestRedisLoginRateLimiter(LoginRateLimiterContract):
    """The contract on RedisLoginRateLimiter and the real Redis."""

    @pytest.fixture
    async def limiter(self, redis_url: str) -> AsyncIterator[LoginRateLimiter]:
        """A limiter on a key prefix of this test alone; its keys are deleted afterwards."""
        client = redis.Redis.from_url(redis_url)
        prefix = f"test:{uuid4().hex}"
        limits = LoginLimits(
            per_username=PER_USERNAME, per_address=PER_ADDRESS, window_seconds=WINDOW
        )
        yield RedisLoginRateLimiter(client, limits, prefix=prefix)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
