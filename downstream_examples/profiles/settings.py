"""Settings of the profile service's read API, read from USERBUS_* environment variables."""

from pydantic import Field

from infra.settings import SqlAlchemyUrl, UserbusSettings


class ProfilesSettings(UserbusSettings):
    """What the profile read API is configured by; built once in main and passed down.

    Its consumer is configured by ConsumerSettings; the relay of its answers by RelaySettings
    (`userbus relay --outbox profiles`, to USERBUS_PROFILE_STREAM).
    """

    database_url: SqlAlchemyUrl = Field(
        description="PostgreSQL URL of the profile projection's database"
    )
