"""Whether a Redis Stream still holds what a consumer group reads next, or lost it to trimming.

The relay trims the stream to its retention (infra/redis/publisher.py), and erasure deletes
entries (infra/redis/erasure.py). A group that had not read them yet, a new group above all,
would silently start after the gap; its consumer reads the event log first instead
(consumers/catch_up.py).
"""

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from infra.reading import ReaderOptions

StreamId = tuple[int, int]


def stream_id(value: Any) -> StreamId:
    """An entry id (`ms-seq`, bytes or text) as a pair that orders as the stream does."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def trimmed_past(client: Redis, options: ReaderOptions) -> tuple[str, str] | None:
    """The stream's last id and why, if entries the group has not read were removed.

    Entries were removed when more were ever added than the stream holds; the group has
    not read them when it stands before the first entry left (or, the stream empty, before
    its last id). None when the stream or the group does not exist, or nothing is missing.
    A group standing exactly on the last removed entry counts as missing some: reading the
    log then is only unneeded, never wrong.
    """
    try:
        info: Any = await client.xinfo_stream(options.stream)
        groups: Any = await client.xinfo_groups(options.stream)
    except ResponseError:
        return None  # no stream yet: nothing was removed from it
    group = next((g for g in groups if _text(g["name"]) == options.group), None)
    removed = int(info["entries-added"]) - int(info["length"])
    if group is None or removed <= 0:
        return None
    delivered = stream_id(group["last-delivered-id"])
    last = _text(info["last-generated-id"])
    first = info.get("first-entry")
    bound = stream_id(first[0]) if first else stream_id(last)
    if delivered >= bound:
        return None
    where = f"{_text(first[0])}, the first entry left" if first else f"{last}, its end"
    return last, (
        f"{removed} entries were removed from the stream (trimmed or erased) and the group, "
        f"at {_text(group['last-delivered-id'])}, stands before {where}"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
