"""Every settings class reads the USERBUS_* variables it always did, with the same defaults."""

import os
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from auth.maintenance.settings import PruneSettings
from auth.settings import AuthSettings
from consumers.settings import ConsumerSettings
from downstream_examples.audit.settings import AuditSettings
from downstream_examples.lazy_directory.settings import DirectorySettings, TombstoneSettings
from downstream_examples.notifier.main import create_mailer
from downstream_examples.notifier.settings import NotifierSettings
from infra.mail import FileMailbox, SmtpMailer, mailer_from
from infra.settings import DatabaseSettings, UserbusSettings, asyncpg_dsn, sqlalchemy_url
from producers.settings import RelaySettings
from userbus.dev import DevSettings
from userbus.operations import TopicSettings

REQUIRED = object()
# What every process reads (it was LogSettings, built by the `userbus` entry point).
SHARED = {
    "USERBUS_LOG_LEVEL": "INFO",
    "USERBUS_ENVIRONMENT": "development",
    "USERBUS_LOG_FORMAT": "text",
    "USERBUS_METRICS_PORT": None,
    "USERBUS_METRICS_HOST": "0.0.0.0",
    "USERBUS_METRICS_SAMPLE_SECONDS": 5.0,
    "USERBUS_OTEL_ENABLED": False,
}
MAIL = {
    "USERBUS_MAIL_FROM": "userbus <no-reply@localhost>",
    "USERBUS_SMTP_HOST": None,
    "USERBUS_SMTP_PORT": 587,
    "USERBUS_SMTP_USERNAME": None,
    "USERBUS_SMTP_PASSWORD": None,
    "USERBUS_SMTP_STARTTLS": True,
    "USERBUS_SMTP_IMPLICIT_TLS": False,
    "USERBUS_SMTP_CAFILE": None,
}
KAFKA_TOPIC = {
    "USERBUS_KAFKA_PARTITIONS": 6,
    "USERBUS_KAFKA_REPLICATION_FACTOR": 1,
    "USERBUS_KAFKA_RETENTION_HOURS": 168.0,
}
# How Kafka clients connect (TLS, SASL): every process that talks to the broker.
KAFKA_SECURITY = {
    "USERBUS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "USERBUS_KAFKA_SSL_CAFILE": None,
    "USERBUS_KAFKA_SSL_CERTFILE": None,
    "USERBUS_KAFKA_SSL_KEYFILE": None,
    "USERBUS_KAFKA_SASL_MECHANISM": None,
    "USERBUS_KAFKA_SASL_USERNAME": None,
    "USERBUS_KAFKA_SASL_PASSWORD": None,
}
DEFAULTS: dict[type[BaseSettings], dict[str, object]] = {
    UserbusSettings: SHARED,
    DatabaseSettings: {**SHARED, "USERBUS_DATABASE_URL": REQUIRED},
    AuthSettings: {
        **SHARED,
        **MAIL,
        "USERBUS_DATABASE_URL": REQUIRED,
        "USERBUS_BCRYPT_ROUNDS": 12,
        "USERBUS_HASH_WORKERS": os.cpu_count() or 1,
        "USERBUS_EVENT_SOURCE": "/userbus/auth",
        "USERBUS_DATA_DIR": Path(".userbus"),
        "USERBUS_JWT_ALGORITHM": "EdDSA",
        "USERBUS_JWT_PRIVATE_KEY": None,
        "USERBUS_JWT_PRIVATE_KEY_FILE": None,
        "USERBUS_JWT_ISSUER": "userbus",
        "USERBUS_JWT_AUDIENCE": "userbus",
        "USERBUS_JWT_PREVIOUS_PUBLIC_KEY_FILES": [],
        "USERBUS_ACCESS_TOKEN_TTL_SECONDS": 900,
        "USERBUS_REFRESH_TOKEN_TTL_DAYS": 30,
        "USERBUS_PASSWORD_RESET_TTL_MINUTES": 30,
        "USERBUS_DB_POOL_SIZE": 10,
        "USERBUS_FEED_AUDIENCE": "userbus-feed",
        "USERBUS_SERVICE_TOKEN_TTL_SECONDS": 300,
        "USERBUS_FEED_POOL_SIZE": 4,
        "USERBUS_API_GC_THRESHOLD": 10_000,
        "USERBUS_REDIS_URL": "redis://127.0.0.1:6379/0",
        "USERBUS_REDIS_KEY_PREFIX": "userbus",
        "USERBUS_LOGIN_LIMIT_PER_USERNAME": 5,
        "USERBUS_LOGIN_LIMIT_PER_ADDRESS": 50,
        "USERBUS_LOGIN_LIMIT_WINDOW_SECONDS": 900,
        "USERBUS_TRUSTED_PROXIES": [],
        "USERBUS_MAILBOX_DIR": None,
        "USERBUS_PASSWORD_RESET_URL": None,
        "USERBUS_MAIL_LIMIT_PER_EMAIL": 5,
        "USERBUS_MAIL_LIMIT_PER_ADDRESS": 20,
        "USERBUS_REGISTRATION_LIMIT_PER_ADDRESS": 20,
        "USERBUS_MAIL_LIMIT_WINDOW_SECONDS": 3600,
        "USERBUS_EMAIL_VERIFICATION_TTL_MINUTES": 1440,
        "USERBUS_EMAIL_VERIFICATION_URL": None,
        "USERBUS_REQUIRE_VERIFIED_EMAIL": False,
        "USERBUS_REQUIRE_PROFILE": False,
        "USERBUS_PENDING_REGISTRATION_TIMEOUT_SECONDS": 300.0,
        "USERBUS_REGISTRATION_SWEEP_INTERVAL_SECONDS": 10.0,
        "USERBUS_PROFILE_STREAM": "userbus.profiles",
        "USERBUS_MFA_ENCRYPTION_KEY": None,
        "USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS": [],
        "USERBUS_MFA_ISSUER": "userbus",
        "USERBUS_MFA_CHALLENGE_TTL_SECONDS": 300,
        "USERBUS_MFA_CODE_LIMIT": 5,
    },
    RelaySettings: {
        **SHARED,
        **KAFKA_SECURITY,
        **KAFKA_TOPIC,
        "USERBUS_DATABASE_URL": REQUIRED,
        "USERBUS_BROKER_URL": "redis://127.0.0.1:6379/0",
        "USERBUS_STREAM": "userbus.users",
        "USERBUS_OUTBOX_SCHEMA": "auth",
        # `relay --outbox profiles` read it from the profile API's settings
        # (ProfilesSettings: USERBUS_DATABASE_URL and this, now DatabaseSettings and this).
        "USERBUS_PROFILE_STREAM": "userbus.profiles",
        "USERBUS_RELAY_BATCH_SIZE": 1000,
        "USERBUS_RELAY_WORKERS": None,
        "USERBUS_RELAY_FALLBACK_POLL_SECONDS": 5.0,
        "USERBUS_KAFKA_IDEMPOTENT_PRODUCER": True,
        "USERBUS_RELAY_LOSS_CHECK_SECONDS": 5.0,
        "USERBUS_STREAM_RETENTION_HOURS": 168.0,
        "USERBUS_STREAM_MAX_LENGTH": 0,
    },
    ConsumerSettings: {
        **SHARED,
        **KAFKA_SECURITY,
        **KAFKA_TOPIC,
        "USERBUS_DATABASE_URL": REQUIRED,
        "USERBUS_EVENT_LOG_URL": None,
        "USERBUS_FEED_URL": None,
        "USERBUS_FEED_TOKEN": None,
        "USERBUS_FEED_CLIENT_ID": None,
        "USERBUS_FEED_CLIENT_SECRET": None,
        "USERBUS_BROKER_URL": "redis://127.0.0.1:6379/0",
        "USERBUS_STREAM": "userbus.users",
        "USERBUS_CONSUMER_NAME": socket.gethostname(),
        "USERBUS_CONSUMER_GROUP": None,
        "USERBUS_CONSUMER_BATCH_SIZE": 500,
        "USERBUS_CONSUMER_MAX_ATTEMPTS": 5,
        "USERBUS_CONSUMER_CLAIM_IDLE_MS": 60_000,
        "USERBUS_CONSUMER_START": "beginning",
        "USERBUS_CONSUMER_GC_THRESHOLD": 10_000,
        "USERBUS_KAFKA_MAX_PARTITION_FETCH_BYTES": 4 * 1024 * 1024,
        "USERBUS_KAFKA_SESSION_TIMEOUT_MS": 10_000,
    },
    AuditSettings: {**SHARED, "USERBUS_DATABASE_URL": REQUIRED, "USERBUS_DB_POOL_SIZE": 10},
    DirectorySettings: {
        **SHARED,
        "USERBUS_DATABASE_URL": REQUIRED,
        "USERBUS_JWKS_URL": REQUIRED,
        "USERBUS_JWT_ISSUER": "userbus",
        "USERBUS_JWT_AUDIENCE": "userbus",
    },
    PruneSettings: {
        **SHARED,
        **KAFKA_SECURITY,
        "USERBUS_DATABASE_URL": REQUIRED,
        "USERBUS_BROKER_URL": "redis://127.0.0.1:6379/0",
        "USERBUS_STREAM": "userbus.users",
        "USERBUS_ERASURE_GRACE_SECONDS": 900.0,
        "USERBUS_PRUNE_SESSIONS_AFTER_SECONDS": 86_400.0,
        "USERBUS_PRUNE_REFRESH_TOKENS_AFTER_SECONDS": 86_400.0,
        "USERBUS_PRUNE_RESET_TOKENS_AFTER_SECONDS": 86_400.0,
        "USERBUS_PRUNE_VERIFICATION_TOKENS_AFTER_SECONDS": 86_400.0,
        "USERBUS_PRUNE_BATCH_SIZE": 1000,
        "USERBUS_ERASURE_BATCH_USERS": 100,
    },
    TombstoneSettings: {
        **SHARED,
        "USERBUS_DATABASE_URL": REQUIRED,
        # The auth service's variable: both must agree on how long a token verifies.
        "USERBUS_ACCESS_TOKEN_TTL_SECONDS": 900,
        "USERBUS_TOMBSTONE_MARGIN_SECONDS": 300,
        "USERBUS_PRUNE_BATCH_SIZE": 1000,
    },
    NotifierSettings: {
        **SHARED,
        **MAIL,
        "USERBUS_DATA_DIR": Path(".userbus"),
        "USERBUS_NOTIFIER_MAILBOX_DIR": None,
        "USERBUS_NOTIFIER_WORKERS": 2,
        "USERBUS_NOTIFIER_POLL_SECONDS": 1.0,
        "USERBUS_NOTIFIER_MAX_ATTEMPTS": 8,
        "USERBUS_NOTIFIER_RETRY_BASE_SECONDS": 2.0,
        "USERBUS_NOTIFIER_RETRY_MAX_SECONDS": 600.0,
        "USERBUS_NOTIFIER_MAX_EVENT_AGE_HOURS": 24.0,
    },
    DevSettings: {
        **SHARED,
        "USERBUS_DATABASE_URL": None,
        "USERBUS_BROKER_URL": None,
        "USERBUS_REDIS_URL": None,
        "USERBUS_DATA_DIR": Path(".userbus"),
        "USERBUS_API_HOST": "127.0.0.1",
        "USERBUS_API_PORT": 8000,
        "USERBUS_REQUIRE_PROFILE": False,
    },
    TopicSettings: {
        **SHARED,
        **KAFKA_SECURITY,
        **KAFKA_TOPIC,
        "USERBUS_BROKER_URL": REQUIRED,
        "USERBUS_STREAM": "userbus.users",
        "USERBUS_DATABASE_URL": None,
        "USERBUS_REQUIRE_PROFILE": False,
        "USERBUS_PROFILE_STREAM": "userbus.profiles",
    },
}
# Valid values for the variables a class cannot do without.
REQUIRED_VALUES = {
    "USERBUS_DATABASE_URL": "postgresql://u@db/userbus",
    "USERBUS_JWKS_URL": "https://auth.example/.well-known/jwks.json",
    "USERBUS_BROKER_URL": "redis://valkey:6379/0",
}
CLASSES = pytest.mark.parametrize("settings_class", DEFAULTS, ids=lambda cls: cls.__name__)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No USERBUS_* variable of this machine and no .env file: the test sets what it needs."""
    for variable in [v for v in os.environ if v.upper().startswith("USERBUS_")]:
        monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _variables(settings_class: type[BaseSettings]) -> set[str]:
    prefix = settings_class.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in settings_class.model_fields}


@CLASSES
def test_each_class_reads_its_variables_from_the_userbus_prefix(
    settings_class: type[BaseSettings],
) -> None:
    assert settings_class.model_config.get("env_file") == ".env"
    assert settings_class.model_config.get("extra") == "ignore"
    assert _variables(settings_class) == set(DEFAULTS[settings_class])


@CLASSES
def test_each_class_needs_what_it_needed_and_defaults_the_rest(
    settings_class: type[BaseSettings], environment: pytest.MonkeyPatch
) -> None:
    expected = DEFAULTS[settings_class]
    required = [variable for variable, default in expected.items() if default is REQUIRED]
    if required:
        with pytest.raises(ValidationError) as missing:
            settings_class()
        named = {f"USERBUS_{error['loc'][0]}".upper() for error in missing.value.errors()}
        assert named == set(required)
    for variable in required:
        environment.setenv(variable, REQUIRED_VALUES[variable])

    settings = settings_class()

    defaults = {v: default for v, default in expected.items() if default is not REQUIRED}
    field = len("USERBUS_")
    assert {v: getattr(settings, v[field:].lower()) for v in defaults} == defaults


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/x",
        "postgresql://u:p@db:5432/x",
        "postgresql+asyncpg://u:p@db:5432/x",
    ],
)
def test_the_url_normaliser_accepts_every_postgresql_form(url: str) -> None:
    assert sqlalchemy_url(url) == "postgresql+asyncpg://u:p@db:5432/x"
    assert asyncpg_dsn(url) == "postgresql://u:p@db:5432/x"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@db/x",
        "postgresql+psycopg://u@db/x",
        "redis://db/0",
        "db:5432/x",
        "",
        "POSTGRES://u@db/x",
    ],
)
def test_the_url_normaliser_refuses_anything_else(url: str) -> None:
    for normalise in (sqlalchemy_url, asyncpg_dsn):
        with pytest.raises(ValueError, match="postgresql://"):
            normalise(url)


def test_settings_hold_the_form_their_driver_takes(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("USERBUS_DATABASE_URL", "postgres://u@db/userbus")
    environment.setenv("USERBUS_EVENT_LOG_URL", "postgresql://u@db/auth")
    environment.setenv("USERBUS_JWKS_URL", REQUIRED_VALUES["USERBUS_JWKS_URL"])
    sqlalchemy = [AuthSettings, DatabaseSettings, ConsumerSettings, AuditSettings]
    for settings_class in [*sqlalchemy, DirectorySettings]:
        assert settings_class().database_url == "postgresql+asyncpg://u@db/userbus"
    assert ConsumerSettings().event_log_url == "postgresql+asyncpg://u@db/auth"
    assert RelaySettings().database_url == "postgresql://u@db/userbus"
    environment.setenv("USERBUS_DATABASE_URL", "mysql://u@db/userbus")
    for settings_class in [*sqlalchemy, RelaySettings, DirectorySettings]:
        with pytest.raises(ValidationError, match="postgresql://"):
            settings_class()


def test_one_mail_server_for_both_services_each_with_its_own_mailbox(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("USERBUS_DATABASE_URL", REQUIRED_VALUES["USERBUS_DATABASE_URL"])
    environment.setenv("USERBUS_DATA_DIR", str(tmp_path))
    auth, notifier = AuthSettings(), NotifierSettings()
    auth_mailbox = mailer_from(auth, auth.mailbox_path)
    notifier_mailbox = create_mailer(notifier)
    assert isinstance(auth_mailbox, FileMailbox)
    assert isinstance(notifier_mailbox, FileMailbox)
    assert auth_mailbox.directory == tmp_path / "mailbox"
    assert notifier_mailbox.directory == tmp_path / "notifier-mailbox"

    environment.setenv("USERBUS_SMTP_HOST", "mail.example.com")
    environment.setenv("USERBUS_SMTP_PORT", "2525")
    environment.setenv("USERBUS_MAIL_FROM", "ops@example.com")
    auth, notifier = AuthSettings(), NotifierSettings()
    for mailer in (mailer_from(auth, auth.mailbox_path), create_mailer(notifier)):
        assert isinstance(mailer, SmtpMailer)
        assert (mailer.host, mailer.port, mailer.sender) == (
            "mail.example.com",
            2525,
            "ops@example.com",
        )
