"""Limits counted in Redis, shared by every instance: failed logins, and mails sent on request.

Both kinds are fixed-window counters run by the Lua scripts below (RedisCounters).
"""

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

if TYPE_CHECKING:
    import redis.asyncio


@dataclass(frozen=True)
class LoginLimits:
    """How many failed logins a fixed window allows, per username and per client address."""

    per_username: int = 5
    per_address: int = 50
    window_seconds: int = 900

    def __post_init__(self) -> None:
        for name in ("per_username", "per_address", "window_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoginLimits.{name} must be at least 1")


class RateLimiterUnavailableError(Exception):
    """The limiter cannot count attempts; logins must be refused, not let through unlimited."""

    code = "rate_limiter_unavailable"

    def __init__(self, message: str = "login is temporarily unavailable; try again later") -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class MailLimits:
    """How many mails (resets, verifications) and registrations a fixed window allows.

    `per_email` counts mails to one address, whoever asks and whether or not an account has
    it; `per_address` counts the mail requests of one client address, and
    `registrations_per_address` its registrations (each of which mails a token).
    """

    per_email: int = 5
    per_address: int = 20
    registrations_per_address: int = 20
    window_seconds: int = 3600

    def __post_init__(self) -> None:
        for name in ("per_email", "per_address", "registrations_per_address", "window_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"MailLimits.{name} must be at least 1")


class LoginRateLimiter(Protocol):
    """Counts failed logins and says when a username or address must wait."""

    async def retry_after(self, username: str, address: str | None) -> int | None:
        """Seconds until this username/address may try again, or None if it may now."""
        ...

    async def record_failure(self, username: str, address: str | None) -> int | None:
        """Count a failed login; the wait it causes if it reached a limit, else None."""
        ...

    async def record_success(self, username: str) -> None:
        """Forget the username's failures (the address keeps its count)."""
        ...


# Both scripts take the counters in KEYS, the window in ms as ARGV[1] and each counter's limit
# in ARGV[i + 1]; they return the longest wait in ms among counters at their limit (0: none).
# Lua keeps each call one round trip and atomic: no counter is ever left without its TTL.
_RETRY_AFTER = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      -- a counter without TTL would lock forever: give it the window it should have had
      redis.call('PEXPIRE', key, ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    if ttl > wait then wait = ttl end
  end
end
return wait
"""

_RECORD_FAILURE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  -- NX: the window is fixed from the first failure, later failures do not extend it
  redis.call('PEXPIRE', key, ARGV[1], 'NX')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
  end
end
return wait
"""


# Takes one use from every counter, or none if any is at its limit (a refused request is not
# counted: a client that waits its Retry-After out gets through). Same KEYS and ARGV.
_TAKE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    if ttl > wait then wait = ttl end
  end
end
if wait == 0 then
  for _, key in ipairs(KEYS) do
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[1], 'NX')
  end
end
return wait
"""


def _seconds(milliseconds: int) -> int | None:
    """A script's wait in whole seconds, rounded up so a caller never retries too early."""
    return max(1, math.ceil(milliseconds / 1000)) if milliseconds > 0 else None


def hashed(name: str) -> str:
    """A name as it goes into a key: any string (':' or '*' too) stays in its key space, and
    Redis never holds the names and addresses people type."""
    return hashlib.sha256(name.casefold().encode("utf-8", "surrogatepass")).hexdigest()


async def run_script(
    script: AsyncScript, keys: list[str], args: list[int], *, what: str = "login"
) -> int:
    """Run a counter script; RateLimiterUnavailableError (naming `what`) when Redis cannot."""
    try:
        return int(await script(keys=keys, args=args))
    except RedisError as exc:
        raise RateLimiterUnavailableError(
            f"{what} is temporarily unavailable; try again later"
        ) from exc


class MailRateLimiter(Protocol):
    """Counts mails sent on request and registrations, and says when one must wait."""

    async def take(
        self, *, email: str, address: str | None, registration: bool = False
    ) -> int | None:
        """Count one mail to `email` asked for from `address` (a registration's counts against
        the address's registrations); the wait in seconds if a limit is reached (nothing is
        counted then), else None."""
        ...


class RedisMailRateLimiter:
    """MailLimits as fixed-window counters in Redis, with the login limiter's machinery."""

    def __init__(
        self, redis: "redis.asyncio.Redis", limits: MailLimits, *, prefix: str = "userbus:mail"
    ) -> None:
        self._limits = limits
        self._prefix = prefix
        self._take = redis.register_script(_TAKE)

    async def take(
        self, *, email: str, address: str | None, registration: bool = False
    ) -> int | None:
        """Count one mail to `email` asked for from `address`, or say how long to wait."""
        limits = self._limits
        keys = [f"{self._prefix}:email:{hashed(email)}"]
        args = [limits.window_seconds * 1000, limits.per_email]
        if address is not None:
            kind = "register" if registration else "addr"
            keys.append(f"{self._prefix}:{kind}:{address}")
            args.append(limits.registrations_per_address if registration else limits.per_address)
        return _seconds(await run_script(self._take, keys, args, what="sending mail"))


class RedisLoginRateLimiter:
    """Fixed-window counters of failed logins in Redis, one per username and one per address."""

    def __init__(
        self,
        redis: "redis.asyncio.Redis",
        limits: LoginLimits,
        *,
        prefix: str = "userbus:login",
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._prefix = prefix
        self._retry_after = redis.register_script(_RETRY_AFTER)
        self._record_failure = redis.register_script(_RECORD_FAILURE)

    def username_key(self, username: str) -> str:
        """The key counting this username's failures (case-insensitive)."""
        return f"{self._prefix}:user:{hashed(username)}"

    def address_key(self, address: str) -> str:
        """The key counting this client address's failures (kept readable for operators)."""
        return f"{self._prefix}:addr:{address}"

    async def retry_after(self, username: str, address: str | None) -> int | None:
        """Seconds until this username/address may try again, or None if it may now."""
        keys, args = self._keys_and_args(username, address)
        return _seconds(await self._run(self._retry_after, keys, args))

    async def record_failure(self, username: str, address: str | None) -> int | None:
        """Count a failed login; the wait it causes if it reached a limit, else None."""
        keys, args = self._keys_and_args(username, address)
        return _seconds(await self._run(self._record_failure, keys, args))

    async def record_success(self, username: str) -> None:
        """Forget the username's failures (the address keeps its count)."""
        try:
            await self._redis.delete(self.username_key(username))
        except RedisError as exc:
            raise RateLimiterUnavailableError() from exc

    def _keys_and_args(self, username: str, address: str | None) -> tuple[list[str], list[int]]:
        keys = [self.username_key(username)]
        args = [self._limits.window_seconds * 1000, self._limits.per_username]
        if address is not None:
            keys.append(self.address_key(address))
            args.append(self._limits.per_address)
        return keys, args

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int]) -> int:
        return await run_script(script, keys, args)
