"""Kafka as the broker: every part the registry hands out, on one cluster's servers."""

from collections.abc import Sequence
from datetime import datetime

from infra.dead_letters import DeadLetterQueue
from infra.erasure import ErasedEntries, RedactedHistories
from infra.kafka.admin import ensure_topic
from infra.kafka.dead_letters import KafkaDeadLetters
from infra.kafka.history import KafkaTopicSource
from infra.kafka.publisher import KafkaPublisher
from infra.kafka.reader import KafkaGroupReader
from infra.kafka.security import PLAINTEXT, KafkaSecurity
from infra.kafka.status import kafka_status
from infra.publishing import EventPublisher, Retention, TopicLayout
from infra.reading import ReaderOptions, StreamHistory
from infra.status import StreamStatus


class KafkaBroker:
    """A Kafka (or Kafka-compatible) cluster, by its bootstrap servers and how to connect."""

    def __init__(self, servers: list[str], security: KafkaSecurity = PLAINTEXT) -> None:
        self.servers = servers
        self.security = security

    def publisher(
        self,
        stream: str,
        layout: TopicLayout | None = None,
        *,
        idempotent: bool = True,
        retention: Retention | None = None,
    ) -> EventPublisher:
        """A publisher to the topic `stream`, which it creates with `layout` if missing.

        `retention` is the Redis stream's; a topic's is `layout.retention_ms`.
        """
        return KafkaPublisher(
            self.servers,
            stream,
            layout or TopicLayout(),
            idempotent=idempotent,
            security=self.security,
        )

    def group_reader(self, options: ReaderOptions) -> KafkaGroupReader:
        """A member of the topic's consumer group."""
        return KafkaGroupReader(self.servers, options, self.security)

    def history(self, stream: str) -> StreamHistory:
        """Every partition of the topic, from its earliest offset."""
        return KafkaTopicSource(self.servers, stream, self.security)

    def dead_letters(self, stream: str, layout: TopicLayout | None = None) -> DeadLetterQueue:
        """The dead-letter topic `<stream>.dlq`, created with `layout` before its first letter."""
        return KafkaDeadLetters(self.servers, stream, self.security, layout or TopicLayout())

    async def status(self, stream: str, groups: Sequence[str]) -> StreamStatus:
        """The topic's length, how far behind each named group is, its dead letters."""
        return await kafka_status(self.servers, stream, groups, self.security)

    async def ensure(self, stream: str, layout: TopicLayout | None = None) -> bool:
        """Create the topic with `layout` unless it exists; whether this call created it."""
        return await ensure_topic(self.servers, stream, layout or TopicLayout(), self.security)

    async def erase(
        self, stream: str, redacted: RedactedHistories, *, since: datetime
    ) -> ErasedEntries:
        """Nothing: a record cannot be deleted or rewritten, it leaves with the retention."""
        return ErasedEntries(rewritable=False)
