"""Settings of the profile service, read from USERBUS_* environment variables."""

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.settings import sqlalchemy_url
from events import PROFILE_STREAM


class ProfilesSettings(BaseSettings):
    """What the profile service is configured by; built once in main and passed down."""

    model_config = SettingsConfigDict(env_prefix="USERBUS_", env_file=".env", extra="ignore")

    database_url: str = Field(description="PostgreSQL URL of the profile projection's database")
    # Where `userbus relay --outbox profiles` publishes the registration saga's answers.
    profile_stream: str = Field(default=PROFILE_STREAM, min_length=1)

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return sqlalchemy_url(value)
