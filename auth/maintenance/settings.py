"""Settings of `userbus prune`, read from USERBUS_* environment variables."""

from datetime import timedelta

from pydantic import Field, field_validator

from events import DEFAULT_STREAM
from infra.brokers import broker_kind
from infra.kafka.security import KafkaSecuritySettings
from infra.settings import DatabaseSettings

DAY = 86_400


class PruneSettings(KafkaSecuritySettings, DatabaseSettings):
    """The auth database, the broker its events went to, and how long each kind of row stays.

    `database_url` is the auth service's database. Each age counts from the moment a row
    stopped being of use (a session ended, a token expired or was used).
    """

    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="redis://... or kafka://host:port,..."
    )
    stream: str = Field(default=DEFAULT_STREAM, min_length=1)
    # A deleted user's events are redacted this long after the deletion: consumers that lag
    # behind by less still receive the events as they were and can apply them; after it,
    # they receive the redacted ones (which they apply just as well, without the PII).
    erasure_grace_seconds: float = Field(default=900.0, ge=0)
    # Ended (expired or revoked) sessions, with their refresh tokens.
    prune_sessions_after_seconds: float = Field(default=DAY, ge=0)
    # Expired refresh tokens of sessions still alive (a used but unexpired one stays: it is
    # what tells a stolen copy presented later, and ends the session then).
    prune_refresh_tokens_after_seconds: float = Field(default=DAY, ge=0)
    # Used or expired password reset tokens.
    prune_reset_tokens_after_seconds: float = Field(default=DAY, ge=0)
    # Used or expired email verification tokens.
    prune_verification_tokens_after_seconds: float = Field(default=DAY, ge=0)
    # Rows per DELETE statement (each its own transaction: no long locks).
    prune_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # Deleted users redacted per transaction.
    erasure_batch_users: int = Field(default=100, ge=1, le=10_000)

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        broker_kind(value)
        return value

    @property
    def erasure_grace(self) -> timedelta:
        """How long after a deletion the user's events are redacted."""
        return timedelta(seconds=self.erasure_grace_seconds)
