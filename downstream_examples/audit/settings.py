"""Settings of the audit read API, read from USERBUS_* environment variables."""

from pydantic import Field

from infra.settings import DatabaseSettings


class AuditSettings(DatabaseSettings):
    """What the audit API is configured by; built once in main and passed down."""

    db_pool_size: int = Field(default=10, ge=1, le=1000)
