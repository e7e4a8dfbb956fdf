"""Settings of the directory's HTTP API, read from USERBUS_* environment variables."""

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.settings import sqlalchemy_url


class DirectorySettings(BaseSettings):
    """What the directory API is configured by; built once in main and passed down."""

    model_config = SettingsConfigDict(env_prefix="USERBUS_", env_file=".env", extra="ignore")

    database_url: str = Field(description="PostgreSQL URL of the directory's own database")
    jwks_url: str = Field(
        pattern=r"^https?://",
        description="the auth service's key set, e.g. https://auth.example/.well-known/jwks.json",
    )
    jwt_issuer: str = Field(default="userbus", min_length=1)
    jwt_audience: str = Field(default="userbus", min_length=1)

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return sqlalchemy_url(value)
