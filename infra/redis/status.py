"""A Redis Stream's status: its length, each group's lag and pending entries, dead letters."""

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from events import dead_letter_stream
from infra.redis.publisher import MARKER_GROUP
from infra.status import GroupLag, StreamStatus


async def redis_status(url: str, stream: str) -> StreamStatus:
    """The status of `stream` and of every group on it."""
    client = Redis.from_url(url)
    try:
        length = int(await client.xlen(stream))
        dead = int(await client.xlen(dead_letter_stream(stream)))
        try:
            infos: Any = await client.xinfo_groups(stream)
        except ResponseError:  # no such stream yet
            infos = []
        lags = [
            GroupLag(
                group=_text(info["name"]),
                # Redis 7 reports `lag` (entries not yet delivered); None when it cannot tell.
                behind=info.get("lag"),
                unacknowledged=int(info["pending"]),
            )
            for info in infos
            # The relay's mark (infra/redis/publisher.py) is a group nobody reads.
            if _text(info["name"]) != MARKER_GROUP
        ]
        return StreamStatus(stream, length, lags, dead)
    finally:
        await client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
