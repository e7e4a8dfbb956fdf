"""Settings of the audit read API, read from USERBUS_* environment variables."""

from pydantic import Field

from infra.settings import SqlAlchemyUrl, UserbusSettings


class AuditSettings(UserbusSettings):
    """What the audit API is configured by; built once in main and passed down."""

    database_url: SqlAlchemyUrl = Field(
        description="PostgreSQL URL of the audit service's database"
    )
    db_pool_size: int = Field(default=10, ge=1, le=1000)
