"""Settings of the directory's HTTP API, read from USERBUS_* environment variables."""

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
