"""Settings of the outbox relay, read from USERBUS_* environment variables."""

from pydantic import Field, field_validator

from events import DEFAULT_STREAM, PROFILE_STREAM
from infra.brokers import broker_kind
from infra.settings import AsyncpgDsn, UserbusSettings
from producers.outbox import DEFAULT_SCHEMA, SCHEMA_PATTERN


class RelaySettings(UserbusSettings):
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

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        broker_kind(value)
        return value
