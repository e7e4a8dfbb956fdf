"""Redis/Valkey Streams as the broker: every part the registry hands out, on one URL."""

from collections.abc import Sequence
from datetime import datetime

from infra.dead_letters import DeadLetterQueue
from infra.erasure import ErasedEntries, RedactedHistories
from infra.publishing import EventPublisher, Retention, TopicLayout
from infra.reading import ReaderOptions, StreamHistory
from infra.redis.dead_letters import RedisDeadLetters
from infra.redis.erasure import erase_from_stream
from infra.redis.history import RedisStreamSource
from infra.redis.publisher import RedisStreamPublisher
from infra.redis.reader import RedisGroupReader
from infra.redis.status import redis_status
from infra.status import StreamStatus


class RedisBroker:
    """A Redis or Valkey server, by its `redis://`, `rediss://` or `unix://` URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def publisher(
        self,
        stream: str,
        layout: TopicLayout | None = None,
        *,
        idempotent: bool = True,
        retention: Retention | None = None,
    ) -> EventPublisher:
        """A publisher XADDing to `stream`, trimmed to `retention` (no layout; not retried)."""
        return RedisStreamPublisher(self.url, stream, retention)

    def group_reader(self, options: ReaderOptions) -> RedisGroupReader:
        """A member of the stream's consumer group."""
        return RedisGroupReader(self.url, options)

    def history(self, stream: str) -> StreamHistory:
        """The stream's entries from its first."""
        return RedisStreamSource(self.url, stream)

    def dead_letters(self, stream: str, layout: TopicLayout | None = None) -> DeadLetterQueue:
        """The dead-letter stream `<stream>.dlq` (a stream needs no layout)."""
        return RedisDeadLetters(self.url, stream)

    async def status(self, stream: str, groups: Sequence[str]) -> StreamStatus:
        """The stream's length, every group on it, its dead letters (`groups` is not needed)."""
        return await redis_status(self.url, stream)

    async def ensure(self, stream: str, layout: TopicLayout | None = None) -> bool:
        """Nothing to create: a stream comes into being with its first entry or group."""
        return False

    async def erase(
        self, stream: str, redacted: RedactedHistories, *, since: datetime
    ) -> ErasedEntries:
        """XDEL the users' unredacted entries, appending their redacted events (erasure.py)."""
        return await erase_from_stream(self.url, stream, redacted, since=since)
