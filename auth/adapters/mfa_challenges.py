"""MFA challenges: what a right password gets instead of tokens, kept in Redis until used.

A challenge is a 256-bit random value, stored only as its digest with the user's id and a
TTL, so every API instance can take the code for a challenge another one handed out.
"""

from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from redis.exceptions import RedisError

from auth.adapters.rate_limit import RateLimiterUnavailableError
from auth.adapters.secrets import digest, new_secret

if TYPE_CHECKING:
    import redis.asyncio


class ChallengeStore(Protocol):
    """Hands out challenges and tells whose a challenge is, until it is spent or expires."""

    async def issue(self, user_id: UUID, *, ttl_seconds: int) -> str:
        """A new challenge for the user, valid for `ttl_seconds`."""
        ...

    async def owner(self, challenge: str) -> UUID | None:
        """The user of a live challenge, or None (unknown, expired or spent)."""
        ...

    async def spend(self, challenge: str) -> bool:
        """End the challenge; whether it was still live (exactly one caller gets True)."""
        ...


class RedisChallengeStore:
    """ChallengeStore in Redis: one key per challenge, named by its digest, with a TTL."""

    def __init__(self, redis: "redis.asyncio.Redis", *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def issue(self, user_id: UUID, *, ttl_seconds: int) -> str:
        """A new challenge for the user, valid for `ttl_seconds`."""
        challenge, challenge_hash = new_secret()
        try:
            await self._redis.set(self._key(challenge_hash), str(user_id), ex=ttl_seconds)
        except RedisError as exc:
            raise RateLimiterUnavailableError() from exc
        return challenge

    async def owner(self, challenge: str) -> UUID | None:
        """The user of a live challenge, or None."""
        try:
            value = await self._redis.get(self._key(digest(challenge)))
        except RedisError as exc:
            raise RateLimiterUnavailableError() from exc
        if value is None:
            return None
        return UUID(value.decode() if isinstance(value, bytes) else str(value))

    async def spend(self, challenge: str) -> bool:
        """End the challenge; DEL answers 1 to exactly one of two racing callers."""
        try:
            return bool(await self._redis.delete(self._key(digest(challenge))))
        except RedisError as exc:
            raise RateLimiterUnavailableError() from exc

    def _key(self, challenge_hash: bytes) -> str:
        return f"{self._prefix}:{challenge_hash.hex()}"
