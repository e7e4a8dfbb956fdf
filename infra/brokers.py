"""The broker registry: which broker a URL names, and the one object every part is got from.

`broker_for(url)` gives a `Broker`: the publisher a relay uses, the group reader a consumer
reads through, the history a replay reads, the dead-letter queue, the status and the
stream or topic admin. A Redis/Valkey URL (`redis://`, `rediss://`, `unix://`) names Redis
Streams, `kafka://host:port[,host:port]` a Kafka cluster.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from infra.dead_letters import DeadLetterQueue
from infra.erasure import ErasedEntries, RedactedHistories
from infra.kafka.security import PLAINTEXT, KafkaSecurity
from infra.kafka.urls import KAFKA_SCHEME, kafka_servers
from infra.publishing import EventPublisher, Retention, TopicLayout
from infra.reading import GroupReader, ReaderOptions, StreamHistory
from infra.status import StreamStatus

BrokerKind = Literal["redis", "kafka"]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Broker(Protocol):
    """Everything the services do with one broker, by stream (or topic) name."""

    def publisher(
        self,
        stream: str,
        layout: TopicLayout | None = None,
        *,
        idempotent: bool = True,
        retention: Retention | None = None,
    ) -> EventPublisher:
        """A publisher to `stream`, also its witness (infra/witness.py).

        Kafka: creating a missing topic with `layout`, idempotent. Redis: trimming the stream
        to `retention`.
        """
        ...

    def group_reader(self, options: ReaderOptions) -> GroupReader[Any]:
        """A member of the consumer group `options.group` on `options.stream`."""
        ...

    def history(self, stream: str) -> StreamHistory:
        """Everything the broker keeps of `stream`, for a replay (no group is joined)."""
        ...

    def dead_letters(self, stream: str, layout: TopicLayout | None = None) -> DeadLetterQueue:
        """The dead-letter queue beside `stream`; on Kafka a topic made with `layout`."""
        ...

    async def status(self, stream: str, groups: Sequence[str]) -> StreamStatus:
        """Length, group lag and dead letters of `stream` (Kafka: of the groups named)."""
        ...

    async def ensure(self, stream: str, layout: TopicLayout | None = None) -> bool:
        """Create the stream or topic unless it exists; whether this call created it."""
        ...

    async def erase(
        self, stream: str, redacted: RedactedHistories, *, since: datetime
    ) -> ErasedEntries:
        """Replace what `stream` keeps of these deleted users' events by the redacted ones.

        Redis: their entries from `since` on are deleted and the redacted events appended
        (infra/redis/erasure.py). Kafka cannot delete a record: a no-op, the records leave
        with the topic's retention (`rewritable` is False in the answer).
        """
        ...


def broker_kind(url: str) -> BrokerKind:
    """The kind of broker behind `url`; ValueError for any other scheme."""
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    if url.startswith(KAFKA_SCHEME):
        kafka_servers(url)
        return "kafka"
    raise ValueError("the broker URL must start with redis://, rediss://, unix:// or kafka://")


def broker_for(url: str, kafka_security: KafkaSecurity = PLAINTEXT) -> Broker:
    """The broker behind `url`; ValueError for an unknown scheme or a malformed Kafka URL.

    `kafka_security` is how every Kafka client connects (TLS, SASL); Redis takes its TLS
    from the URL (`rediss://`).
    """
    # Imported here: each broker's client library loads only when that broker is used.
    if broker_kind(url) == "kafka":
        from infra.kafka.broker import KafkaBroker

        return KafkaBroker(kafka_servers(url), kafka_security)
    from infra.redis.broker import RedisBroker

    return RedisBroker(url)
