"""Settings of a consumer process, read from USERBUS_* environment variables."""

import socket
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from events import DEFAULT_STREAM
from infra.brokers import broker_kind
from infra.kafka.security import KafkaSecuritySettings
from infra.settings import SqlAlchemyUrl, UserbusSettings


class ConsumerSettings(KafkaSecuritySettings, UserbusSettings):
    """Everything a consumer is configured by; built once in main and passed down."""

    database_url: SqlAlchemyUrl = Field(
        description="PostgreSQL URL of the projection's own database"
    )
    # The auth service's database, whose outbox is the event log. Replay reads it (by default
    # the projection's own database); set, a consumer also heals from it (consumers/healing.py:
    # a user's missing events backfilled, a new group on a trimmed stream caught up).
    event_log_url: SqlAlchemyUrl | None = None
    # Or the log through the auth service's event feed (`http://auth:8000/events`), with a
    # service token, or a service client's credentials (renewed tokens: for a long run).
    feed_url: str | None = None
    feed_token: SecretStr | None = None
    feed_client_id: str | None = None
    feed_client_secret: SecretStr | None = None
    broker_url: str = "redis://127.0.0.1:6379/0"
    stream: str = Field(default=DEFAULT_STREAM, min_length=1)
    # Stable across restarts of one process, so it finds its own unacknowledged entries.
    consumer_name: str = Field(default_factory=socket.gethostname, min_length=1)
    # The consumer group; by default the projection's name. Another name gives an
    # independent copy of the projection on the same stream (a second deployment, a test).
    consumer_group: str | None = Field(default=None, min_length=1)
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Attempts at an event that keeps failing (not a database outage) before it goes to the
    # dead-letter stream and the consumer moves on.
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    # Redis only: an entry pending this long (its consumer died) is claimed by a live one.
    consumer_claim_idle_ms: int = Field(default=60_000, ge=100)
    # Where a consumer group that does not exist yet starts: the whole history, or only new.
    consumer_start: Literal["beginning", "end"] = "beginning"
    # Allocations between two young-generation garbage collections (Python's default: 700).
    # Decoding creates some twenty objects per event, so the default collects every few
    # dozen events (bench/README.md: what the higher threshold gained). 0 leaves the
    # interpreter's setting alone (a consumer embedded in a process that tunes its own).
    consumer_gc_threshold: int = Field(default=10_000, ge=0)
    # Kafka only: the topic is created with these if the consumer starts before the relay.
    kafka_partitions: int = Field(default=6, ge=1, le=10_000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)
    # Kafka only: the `retention.ms` of a topic the consumer creates (0: the broker's default).
    kafka_retention_hours: float = Field(default=168.0, ge=0)
    # Kafka only: how much of each partition one fetch may bring. aiokafka fetches a
    # partition again only once its records are used up; at aiokafka's default the consumer
    # spent a good part of a backlog waiting on those fetches (bench/README.md).
    kafka_max_partition_fetch_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    # How long a silent group member keeps its partitions before they move to another.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        broker_kind(value)
        return value

    @property
    def event_log_database_url(self) -> str:
        """The database holding the auth service's outbox."""
        return self.event_log_url or self.database_url
