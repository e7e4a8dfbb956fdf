"""How an envelope sits in a Redis Stream entry, and reading a stream's entries in pages.

A stream entry has a single field, `__data__` (FastStream's data field, so FastStream
subscribers can read our streams), whose value is the envelope as UTF-8 CloudEvents JSON
(structured mode): `redis-cli XRANGE userbus.users - +` shows readable events and any client
can consume them.
"""

from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

STREAM_FIELD = "__data__"
DATA = STREAM_FIELD.encode()
"""The field name as it comes back from the server (redis-py returns bytes)."""

Entry = tuple[bytes, dict[bytes, bytes]]


async def entry_pages(
    client: Redis, stream: str, size: int, after: str = ""
) -> AsyncIterator[list[Entry]]:
    """Every entry of `stream` after id `after` ("": from its first), in stream order (XRANGE).

    At most `size` entries a page.
    """
    start = "(" + after if after else "-"
    while True:
        entries: Any = await client.xrange(stream, min=start, count=size)
        if not entries:
            return
        yield list(entries)
        start = "(" + entries[-1][0].decode()
