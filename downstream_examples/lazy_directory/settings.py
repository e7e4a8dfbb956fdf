"""Settings of the directory's HTTP API, read from USERBUS_* environment variables."""

from datetime import timedelta

from pydantic import Field

from infra.settings import DatabaseSettings


class DirectorySettings(DatabaseSettings):
    """What the directory API is configured by; built once in main and passed down."""

    jwks_url: str = Field(
        pattern=r"^https?://",
        description="the auth service's key set, e.g. https://auth.example/.well-known/jwks.json",
    )
    jwt_issuer: str = Field(default="userbus", min_length=1)
    jwt_audience: str = Field(default="userbus", min_length=1)


class TombstoneSettings(DatabaseSettings):
    """What `userbus prune directory` is configured by: the directory's database, the ages.

    A tombstone must outlive every access token of its user: a token verifies for its
    lifetime (`USERBUS_ACCESS_TOKEN_TTL_SECONDS`, the auth service's variable: give both the
    same value) plus the verifier's leeway (10 s), and the margin covers that leeway and
    clocks that disagree.
    """

    access_token_ttl_seconds: int = Field(default=900, ge=30)
    tombstone_margin_seconds: int = Field(default=300, ge=60)
    prune_batch_size: int = Field(default=1000, ge=1, le=100_000)

    @property
    def tombstone_keep(self) -> timedelta:
        """How long a tombstone stays after the deletion it records."""
        return timedelta(seconds=self.access_token_ttl_seconds + self.tombstone_margin_seconds)
