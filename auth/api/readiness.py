"""ApiReadiness: whether the API can serve, asked of PostgreSQL, Redis and the signing key."""

import asyncio
from collections.abc import Awaitable

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.service_layer.context import AccessTokens

CHECK_TIMEOUT = 3.0


class ApiReadiness:
    """The checks behind /readyz; its own Redis client, opened on the first check."""

    def __init__(self, engine: AsyncEngine, redis_url: str, tokens: AccessTokens) -> None:
        self._engine = engine
        self._redis_url = redis_url
        self._tokens = tokens
        self._redis: redis.Redis | None = None

    async def checks(self) -> dict[str, str]:
        """Each dependency's answer: "ok", or what failed (checked at once, in parallel)."""
        database, cache = await asyncio.gather(_timed(self._database()), _timed(self._ping_redis()))
        return {"database": database, "redis": cache, "signing_key": self._signing_key()}

    async def close(self) -> None:
        """Close the Redis client, if a check opened it."""
        if self._redis is not None:
            await self._redis.aclose()

    async def _database(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def _ping_redis(self) -> None:
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self._redis_url, socket_timeout=2, socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
            )  # fmt: skip
        await self._redis.ping()

    def _signing_key(self) -> str:
        # The lifespan loads the key before serving; a key set without a usable key fails.
        try:
            keys = self._tokens.jwks().get("keys", [])
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "ok" if keys else "no signing key loaded"


async def _timed(check: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(check, timeout=CHECK_TIMEOUT)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"
