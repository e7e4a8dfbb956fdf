"""What every userbus settings class shares, and the one PostgreSQL URL normaliser."""

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from infra.safe_defaults import placeholder_secrets
from infra.secret_files import FileVariablesSource

# The forms of a PostgreSQL URL people write; SQLAlchemy's asyncpg dialect is the first.
_SQLALCHEMY_PREFIX = "postgresql+asyncpg://"
_POSTGRES_PREFIXES = (_SQLALCHEMY_PREFIX, "postgresql://", "postgres://")


def sqlalchemy_url(url: str) -> str:
    """Normalise a PostgreSQL URL to SQLAlchemy's asyncpg dialect."""
    for prefix in _POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return _SQLALCHEMY_PREFIX + url.removeprefix(prefix)
    raise ValueError("a database URL must be a postgresql:// URL")


def asyncpg_dsn(url: str) -> str:
    """A PostgreSQL URL in the form asyncpg accepts (no SQLAlchemy dialect suffix)."""
    return "postgresql://" + sqlalchemy_url(url).removeprefix(_SQLALCHEMY_PREFIX)


# Settings fields holding a PostgreSQL URL, checked and normalised as they are read.
SqlAlchemyUrl = Annotated[str, AfterValidator(sqlalchemy_url)]
AsyncpgDsn = Annotated[str, AfterValidator(asyncpg_dsn)]


class UserbusSettings(BaseSettings):
    """The base of every process's settings: USERBUS_* variables, *_FILE files or a .env file.

    Built alone, it is what every `userbus` process reads before knowing its command.
    """

    model_config = SettingsConfigDict(env_prefix="USERBUS_", env_file=".env", extra="ignore")

    # Production refuses placeholder passwords in every process (and more in the API's).
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = Field(default="INFO", pattern="(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    # Text unless told: a terminal reads it, and what ran before keeps logging as it did; a
    # deployment with a log shipper sets json (deploy/k8s does).
    log_format: Literal["text", "json"] = "text"
    # The relay's and consumers' own /metrics, /livez and /readyz. Off unless set: processes
    # sharing a host (`userbus dev`, tests, several consumers) would collide on one default
    # port; a deployment names it (9100 in deploy/k8s). The API serves them on its own port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"
    # How often the relay samples its backlog and a consumer its lag, for /metrics.
    metrics_sample_seconds: float = Field(default=5.0, gt=0)
    # OpenTelemetry spans (the `otel` extra): off unless set.
    otel_enabled: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' sources, with USERBUS_<NAME>_FILE between the variables and .env."""
        files = FileVariablesSource(settings_cls)
        return init_settings, env_settings, files, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> "UserbusSettings":
        if self.environment == "production":
            values = {name: getattr(self, name) for name in type(self).model_fields}
            problems = list(placeholder_secrets(values, "USERBUS_"))
            if problems:
                raise ValueError(f"{'; '.join(problems)}: production needs real secrets")
        return self


class DatabaseSettings(UserbusSettings):
    """A process's own PostgreSQL database: all that `userbus migrate` and the profile API need.

    The auth service's, the audit API's and the directory's settings extend it. Migrating
    builds it alone, so that it never asks for what only the API needs (in production, a
    signing key).
    """

    database_url: SqlAlchemyUrl = Field(description="PostgreSQL URL of the service's database")
