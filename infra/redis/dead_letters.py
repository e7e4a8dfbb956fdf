"""Dead letters in the Redis Stream `<stream>.dlq`, beside the events."""

from collections.abc import AsyncIterator, Sequence

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from events import dead_letter_stream
from infra.dead_letters import DeadLetter, letter_fields, stored_letter
from infra.redis.wire import DATA, STREAM_FIELD, entry_pages


class RedisDeadLetters:
    """Dead letters in the Redis Stream `<stream>.dlq`: the body in the data field, and why."""

    def __init__(self, url: str, stream: str) -> None:
        self._client = Redis.from_url(url)
        self._stream = stream
        self._dlq = dead_letter_stream(stream)

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """XADD each letter with its error and origin."""
        async with self._client.pipeline(transaction=False) as pipe:
            for letter in letters:
                entry: dict[FieldT, EncodableT] = {STREAM_FIELD: letter.payload}
                entry.update(letter_fields(letter))
                pipe.xadd(self._dlq, entry)
            await pipe.execute()

    async def read(self) -> AsyncIterator[DeadLetter]:
        """The letters in stream order."""
        async for entries in entry_pages(self._client, self._dlq, 500):
            for entry_id, fields in entries:
                attributes = {
                    name.decode(): value.decode("utf-8", "replace")
                    for name, value in fields.items()
                    if name != DATA
                }
                yield stored_letter(fields.get(DATA, b""), attributes, entry_id.decode())

    async def retry(self, letter_ids: Sequence[str] | None = None) -> int:
        """XADD the bodies back to the stream and remove those letters from the queue."""
        wanted = set(letter_ids) if letter_ids is not None else None
        letters = [
            letter async for letter in self.read() if wanted is None or letter.letter_id in wanted
        ]
        for letter in letters:
            # Back first, then removed: a crash in between leaves a duplicate, not a loss.
            await self._client.xadd(self._stream, {STREAM_FIELD: letter.payload})
            await self._client.xdel(self._dlq, letter.letter_id)
        return len(letters)

    async def close(self) -> None:
        """Close the connection."""
        await self._client.aclose()
