"""USERBUS_<NAME>_FILE: any setting, secrets above all, can be read from a file."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from auth.settings import AuthSettings
from consumers.settings import ConsumerSettings
from producers.settings import RelaySettings

URL = "postgresql://userbus:9c1f-long-secret@db:5432/userbus"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No USERBUS_* variable of this machine and no .env file: the test sets what it needs."""
    for variable in [v for v in os.environ if v.upper().startswith("USERBUS_")]:
        monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def secret(tmp_path: Path, name: str, text: str) -> str:
    """A secret file as Docker or Kubernetes mounts it; its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_secrets_come_from_files_without_their_final_newline(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("USERBUS_DATABASE_URL_FILE", secret(tmp_path, "db", URL + "\n"))
    environment.setenv(
        "USERBUS_REDIS_URL_FILE", secret(tmp_path, "redis", "rediss://:r3d-long@cache:6380/0")
    )
    environment.setenv("USERBUS_SMTP_PASSWORD_FILE", secret(tmp_path, "smtp", " spaced pw \r\n"))

    settings = AuthSettings()

    assert settings.database_url == URL.replace("postgresql://", "postgresql+asyncpg://")
    assert settings.redis_url == "rediss://:r3d-long@cache:6380/0"
    assert settings.smtp_password is not None
    # Only line ends are trimmed: spaces may be part of a password.
    assert settings.smtp_password.get_secret_value() == " spaced pw "


def test_every_process_reads_them(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environment.setenv("USERBUS_DATABASE_URL_FILE", secret(tmp_path, "db", URL))
    environment.setenv("USERBUS_FEED_CLIENT_SECRET_FILE", secret(tmp_path, "client", "s3cret-x"))
    environment.setenv("USERBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    environment.setenv("USERBUS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    environment.setenv("USERBUS_KAFKA_SASL_USERNAME", "relay")
    environment.setenv("USERBUS_KAFKA_SASL_PASSWORD_FILE", secret(tmp_path, "sasl", "k-pass-x"))

    consumer = ConsumerSettings()

    assert RelaySettings().database_url == URL
    assert consumer.feed_client_secret is not None
    assert consumer.feed_client_secret.get_secret_value() == "s3cret-x"
    assert consumer.kafka_sasl_password is not None
    assert consumer.kafka_sasl_password.get_secret_value() == "k-pass-x"
    assert consumer.kafka_security.sasl_password == "k-pass-x"


def test_a_file_value_is_validated_like_the_variable(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("USERBUS_DATABASE_URL_FILE", secret(tmp_path, "db", "mysql://u@db/x"))

    with pytest.raises(ValidationError, match="postgresql://"):
        RelaySettings()


def test_the_variable_and_its_file_together_are_refused(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("USERBUS_DATABASE_URL", URL)
    environment.setenv("USERBUS_DATABASE_URL_FILE", secret(tmp_path, "db", URL))

    with pytest.raises(ValidationError) as refused:
        RelaySettings()

    [error] = refused.value.errors()
    assert error["loc"] == ("database_url_file",)
    assert "set USERBUS_DATABASE_URL or USERBUS_DATABASE_URL_FILE, not both" in error["msg"]


def test_a_missing_file_is_named(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environment.setenv("USERBUS_DATABASE_URL_FILE", str(tmp_path / "absent"))

    with pytest.raises(ValidationError, match=r"cannot read .*absent"):
        RelaySettings()


def test_the_jwt_key_file_keeps_its_own_meaning(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("USERBUS_DATABASE_URL", URL)
    environment.setenv("USERBUS_JWT_PRIVATE_KEY_FILE", str(tmp_path / "key.pem"))

    settings = AuthSettings()

    # A path the token service reads, not the key's text in USERBUS_JWT_PRIVATE_KEY.
    assert settings.jwt_private_key_file == tmp_path / "key.pem"
    assert settings.jwt_private_key is None


def test_arguments_given_in_code_win_over_files(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("USERBUS_DATABASE_URL_FILE", secret(tmp_path, "db", URL))

    assert RelaySettings(database_url="postgresql://other@db/x").database_url == (
        "postgresql://other@db/x"
    )
