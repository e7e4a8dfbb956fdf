"""Settings of the auth service, read from USERBUS_* environment variables."""

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def sqlalchemy_url(url: str) -> str:
    """Normalise a PostgreSQL URL to SQLAlchemy's asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("database_url must be a postgresql:// URL")


class DatabaseSettings(BaseSettings):
    """Where the auth database is: all that `userbus migrate` needs."""

    model_config = SettingsConfigDict(env_prefix="USERBUS_", env_file=".env", extra="ignore")

    database_url: str = Field(description="PostgreSQL URL of the auth database")

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return sqlalchemy_url(value)


class AuthSettings(DatabaseSettings):
    """Everything the auth service is configured by; built once in main and passed down."""

    environment: Literal["development", "test", "production"] = "development"
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    # bcrypt runs in threads (it releases the GIL); one per core keeps cheap requests responsive.
    hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    event_source: str = "/userbus/auth"
    data_dir: Path = Path(".userbus")
    jwt_algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "userbus"
    jwt_audience: str = "userbus"
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    db_pool_size: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> "AuthSettings":
        # Outside development a generated key would change on every deployment and differ
        # between instances, silently invalidating every token: refuse to start instead.
        if self.environment == "production" and not (
            self.jwt_private_key or self.jwt_private_key_file
        ):
            raise ValueError(
                "USERBUS_JWT_PRIVATE_KEY or USERBUS_JWT_PRIVATE_KEY_FILE is required in production"
            )
        return self

    @property
    def generated_key_file(self) -> Path:
        """Where development keeps its generated signing key, so restarts keep tokens valid."""
        return self.data_dir / f"jwt-{self.jwt_algorithm.lower()}.pem"
