"""Settings of the audit read API, read from USERBUS_* environment variables."""

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.settings import sqlalchemy_url


class AuditSettings(BaseSettings):
    """What the audit API is configured by; built once in main and passed down."""

    model_config = SettingsConfigDict(env_prefix="USERBUS_", env_file=".env", extra="ignore")

    database_url: str = Field(description="PostgreSQL URL of the audit service's database")
    db_pool_size: int = Field(default=10, ge=1, le=1000)

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return sqlalchemy_url(value)
