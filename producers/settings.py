"""Settings of the outbox relay, read from USERBUS_* environment variables."""

from pydantic import Field, field_validator

from events import DEFAULT_STREAM, PROFILE_STREAM
from infra.brokers import broker_kind
from infra.kafka.security import KafkaSecuritySettings
from infra.publishing import Retention, TopicLayout, retention_ms
from infra.settings import AsyncpgDsn, UserbusSettings
from producers.outbox import DEFAULT_SCHEMA, SCHEMA_PATTERN


class RelaySettings(KafkaSecuritySettings, UserbusSettings):
    """Everything the relay is configured by; built once in main and passed down."""

    database_url: AsyncpgDsn = Field(description="PostgreSQL URL of the auth database (its outbox)")
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="redis://... or kafka://host:port,..."
    )
    stream: str = Field(default=DEFAULT_STREAM, min_length=1)
    # The schema of the outbox to relay: the auth service's, or another service's made with
    # producers.outbox (the profile service's answers: `userbus relay --outbox profiles`).
    outbox_schema: str = Field(default=DEFAULT_SCHEMA, pattern=SCHEMA_PATTERN)
    # Where the profile service's outbox goes (`--outbox profiles` relays it there).
    profile_stream: str = Field(default=PROFILE_STREAM, min_length=1)
    relay_batch_size: int = Field(default=1000, ge=1, le=10_000)
    # Batches in flight at once per relay process, each on its own database connection. By
    # default one on Redis (its script call is fast, so overlap buys less than the extra
    # per-user checks cost) and two on Kafka, whose acks take longer: a second worker locks
    # and prepares the next batch meanwhile. On loopback the overlap is paid for by the
    # per-user check, which then runs on most batches (bench/README.md has the figures).
    relay_workers: int | None = Field(default=None, ge=1, le=16)

    @property
    def workers(self) -> int:
        """The number of relay workers, the broker's default unless set."""
        if self.relay_workers is not None:
            return self.relay_workers
        return 2 if broker_kind(self.broker_url) == "kafka" else 1

    # The relay wakes on NOTIFY; this poll only covers a notification missed while the
    # listening connection was being re-established.
    relay_fallback_poll_seconds: float = Field(default=5.0, gt=0)
    # Kafka only: the topic the relay creates when it does not exist yet.
    kafka_partitions: int = Field(default=6, ge=1, le=10_000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)
    # Broker retries never duplicate or reorder a send. Brokers without InitProducerId (the
    # in-memory Tansu the tests use) need it off; order per partition holds either way,
    # because aiokafka keeps one batch per partition in flight.
    kafka_idempotent_producer: bool = True
    # How often the relay checks that the stream or topic still holds what it published
    # (producers/loss.py); it also checks at start and when publishing finds a loss. 0 turns
    # the check off, and with it the Redis publisher's refusal to write into an unmarked
    # stream.
    relay_loss_check_seconds: float = Field(default=5.0, ge=0)
    # Redis: entries older than this are trimmed as the relay publishes (0: kept by age).
    stream_retention_hours: float = Field(default=168.0, ge=0)
    # Redis: at most about this many entries are kept (0: no limit by length).
    stream_max_length: int = Field(default=0, ge=0)
    # Kafka: the `retention.ms` of a topic the relay creates (0: the broker's default).
    kafka_retention_hours: float = Field(default=168.0, ge=0)

    @property
    def retention(self) -> Retention:
        """How much of a Redis stream the relay keeps."""
        return Retention(retention_ms(self.stream_retention_hours), self.stream_max_length or None)

    @property
    def topic_layout(self) -> TopicLayout:
        """How the relay creates a missing Kafka topic."""
        return TopicLayout(
            self.kafka_partitions,
            self.kafka_replication_factor,
            retention_ms(self.kafka_retention_hours),
        )

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        broker_kind(value)
        return value
