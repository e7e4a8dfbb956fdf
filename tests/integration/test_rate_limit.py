"""The login rate limiter against the real Redis: limits, windows, key safety, failing closed."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import uuid4

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from auth.adapters.rate_limit import (
    LoginLimits,
    RateLimiterUnavailableError,
    RedisLoginRateLimiter,
)
from tests.conftest import unique_username

pytestmark = pytest.mark.integration

SMALL = LoginLimits(per_username=3, per_address=5, window_seconds=60)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A Redis client of this test alone."""
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(client: redis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"test:{uuid4().hex}"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


def make_limiter(
    client: redis.Redis, prefix: str, limits: LoginLimits = SMALL
) -> RedisLoginRateLimiter:
    """A limiter on this test's prefix."""
    return RedisLoginRateLimiter(client, limits, prefix=prefix)


def unique_address() -> str:
    """An address no other test uses (IPv6, so it contains colons)."""
    return f"2001:db8::{uuid4().hex[:4]}"


async def test_failures_under_the_limit_are_allowed(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix, LoginLimits())
    username, address = unique_username(), unique_address()

    assert await limiter.retry_after(username, address) is None
    for _ in range(4):
        assert await limiter.record_failure(username, address) is None
    assert await limiter.retry_after(username, address) is None


async def test_fifth_failure_locks_the_username_for_the_window(
    client: redis.Redis, prefix: str
) -> None:
    limits = LoginLimits()
    limiter = make_limiter(client, prefix, limits)
    username, address = unique_username(), unique_address()
    for _ in range(4):
        await limiter.record_failure(username, address)

    locked_for = await limiter.record_failure(username, address)

    assert locked_for is not None
    assert limits.window_seconds - 1 <= locked_for <= limits.window_seconds
    for other_address in (address, unique_address(), None):
        retry_after = await limiter.retry_after(username, other_address)
        assert retry_after is not None
        assert 0 < retry_after <= limits.window_seconds


async def test_another_username_is_unaffected(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix)
    locked, other = unique_username(), unique_username()
    for _ in range(SMALL.per_username):
        await limiter.record_failure(locked, None)

    assert await limiter.retry_after(locked, None) is not None
    assert await limiter.retry_after(other, None) is None


async def test_usernames_are_case_insensitive(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix)
    username = unique_username("Straße")
    await limiter.record_failure(username.upper(), None)
    await limiter.record_failure(username.lower(), None)

    locked_for = await limiter.record_failure(username.replace("ß", "ss"), None)

    assert locked_for is not None
    assert await limiter.retry_after(username.swapcase(), None) is not None


async def test_address_limit_blocks_every_username_from_that_address(
    client: redis.Redis, prefix: str
) -> None:
    limiter = make_limiter(client, prefix)
    address = unique_address()
    results = [
        await limiter.record_failure(unique_username(), address) for _ in range(SMALL.per_address)
    ]

    assert results[:-1] == [None] * (SMALL.per_address - 1)
    assert results[-1] is not None
    newcomer = unique_username()
    assert await limiter.retry_after(newcomer, address) is not None
    assert await limiter.retry_after(newcomer, unique_address()) is None
    assert await limiter.retry_after(newcomer, None) is None


async def test_success_clears_the_username_counter_but_not_the_address_one(
    client: redis.Redis, prefix: str
) -> None:
    limiter = make_limiter(client, prefix)
    username, address = unique_username(), unique_address()
    for _ in range(SMALL.per_username):
        await limiter.record_failure(username, address)
    assert await limiter.retry_after(username, None) is not None

    await limiter.record_success(username)

    assert await limiter.retry_after(username, None) is None
    assert await client.get(limiter.username_key(username)) is None
    assert await client.get(limiter.address_key(address)) == str(SMALL.per_username).encode()
    # The address still counts the failures from before the success: two more lock it.
    await limiter.record_failure(username, address)
    assert await limiter.record_failure(username, address) is not None
    assert await limiter.retry_after(unique_username(), address) is not None


async def test_counters_always_have_a_ttl(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix)
    username, address = unique_username(), unique_address()
    keys = (limiter.username_key(username), limiter.address_key(address))

    await limiter.record_failure(username, address)
    for key in keys:
        assert 0 < await client.ttl(key) <= SMALL.window_seconds

    await asyncio.gather(*(limiter.record_failure(username, address) for _ in range(100)))

    for key in keys:
        assert await client.get(key) == b"101"  # no failure lost under concurrency
        assert 0 < await client.ttl(key) <= SMALL.window_seconds


async def test_window_is_fixed_from_the_first_failure(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix)
    username = unique_username()
    key = limiter.username_key(username)
    await limiter.record_failure(username, None)
    await client.pexpire(key, 30_000)  # as if the first failure were 30 s old

    await limiter.record_failure(username, None)

    assert 0 < await client.pttl(key) <= 30_000


async def test_a_one_second_window_expires(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix, LoginLimits(per_username=1, window_seconds=1))
    username = unique_username()
    assert await limiter.record_failure(username, None) == 1
    await asyncio.sleep(0.5)
    assert await limiter.retry_after(username, None) == 1  # rounded up, never 0

    await asyncio.sleep(0.6)

    assert await limiter.retry_after(username, None) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda limiter: limiter.retry_after("alice", "192.0.2.1"),
        lambda limiter: limiter.record_failure("alice", "192.0.2.1"),
        lambda limiter: limiter.record_success("alice"),
    ],
    ids=["retry_after", "record_failure", "record_success"],
)
async def test_unreachable_redis_fails_closed(
    call: Callable[[RedisLoginRateLimiter], Awaitable[object]],
) -> None:
    # No retries: redis-py 8's default policy (10, backing off to 1 s) only delays the same
    # error by about 4 s per call.
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    limiter = RedisLoginRateLimiter(unreachable, SMALL)
    try:
        with pytest.raises(RateLimiterUnavailableError):
            await call(limiter)
    finally:
        await unreachable.aclose()


async def test_any_username_stays_in_its_own_key(client: redis.Redis, prefix: str) -> None:
    limiter = make_limiter(client, prefix)
    address = "192.0.2.7"
    weird = [
        ":",
        "*",
        "a\nb\r\n*3",
        "x" * 1000,
        f"addr:{address}",
        f"{prefix}:addr:{address}",
        "",
        "\ud800 lone surrogate",
    ]
    for username in weird:
        for _ in range(SMALL.per_username):
            await limiter.record_failure(username, None)

    for username in weird:
        assert await limiter.retry_after(username, None) is not None
    assert await limiter.retry_after(unique_username(), address) is None
    keys = {key.decode() async for key in client.scan_iter(match=f"{prefix}:*")}
    assert keys == {limiter.username_key(username) for username in weird}
    assert all(len(key) == len(f"{prefix}:user:") + 64 for key in keys)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_username"):
        LoginLimits(per_username=0)
