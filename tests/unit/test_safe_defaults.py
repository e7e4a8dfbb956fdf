"""Production mode's refusals: placeholder passwords in any process, weak keys in the API."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from auth.security.signing_keys import signing_key_from_pem
from auth.settings import AuthSettings
from consumers.settings import ConsumerSettings
from infra.safe_defaults import is_placeholder, url_password
from producers.settings import RelaySettings


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://u:p%40ss@db/x", "p@ss"),
        ("postgresql://u:@db/x", ""),
        ("postgresql://u@db/x", None),
        ("postgresql://db/x", None),
        ("redis://:changeme@valkey:6379/0", "changeme"),
        ("kafka://k1:9092,k2:9092", None),
        ("not a url", None),
    ],
)
def test_the_password_of_a_url(url: str, password: str | None) -> None:
    assert url_password(url) == password


@pytest.mark.parametrize("password", ["postgres", "PASSWORD", " changeme ", "", "userbus"])
def test_placeholders_are_known_in_any_case(password: str) -> None:
    assert is_placeholder(password)


def test_a_real_password_is_no_placeholder() -> None:
    assert not is_placeholder("tY7-q2rW9-vKx")


def test_outside_production_placeholders_are_accepted() -> None:
    for environment in ("development", "test"):
        settings = RelaySettings(
            environment=environment, database_url="postgresql://postgres:postgres@db/x"
        )
        assert settings.database_url == "postgresql://postgres:postgres@db/x"


def test_production_accepts_urls_without_a_password() -> None:
    # Trust, peer or IAM authentication: no password is no placeholder.
    settings = ConsumerSettings(environment="production", database_url="postgresql://u@db/x")
    assert settings.environment == "production"


def test_every_secret_setting_is_checked() -> None:
    with pytest.raises(ValidationError) as refused:
        ConsumerSettings(
            environment="production",
            database_url="postgresql://u:postgres@db/x",
            event_log_url="postgresql://u:admin@db/auth",
            feed_client_secret="secret",
            broker_url="redis://:redis@valkey:6379/0",
        )
    message = str(refused.value)
    for problem in (
        "USERBUS_DATABASE_URL holds a placeholder password ('postgres')",
        "USERBUS_EVENT_LOG_URL holds a placeholder password ('admin')",
        "USERBUS_FEED_CLIENT_SECRET is a placeholder password",
        "USERBUS_BROKER_URL holds a placeholder password ('redis')",
    ):
        assert problem in message


def test_production_still_needs_a_key_setting() -> None:
    with pytest.raises(ValidationError, match="required in production"):
        AuthSettings(environment="production", database_url="postgresql://u@db/x")


def test_rsa_keys_under_2048_bits_are_refused_in_every_mode() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="has 1024 bits; RS256 needs 2048 or more"):
        signing_key_from_pem(weak, "RS256")
