"""Settings of the auth service, read from USERBUS_* environment variables."""

import base64
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import NoDecode

from auth.security.proxies import Network, parse_networks
from events import PROFILE_STREAM
from infra.mail import MailSettings
from infra.settings import DatabaseSettings


class AuthSettings(MailSettings, DatabaseSettings):
    """Everything the auth service is configured by; built once in main and passed down."""

    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    # bcrypt runs in threads (it releases the GIL); one per core keeps cheap requests responsive.
    hash_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    event_source: str = "/userbus/auth"
    data_dir: Path = Path(".userbus")
    jwt_algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "userbus"
    jwt_audience: str = "userbus"
    # Public keys (PEM files) of keys rotated out: published in the JWKS and accepted for
    # verification until the tokens they signed have expired.
    jwt_previous_public_key_files: list[Path] = Field(default_factory=list)
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_days: int = Field(default=30, ge=1)
    password_reset_ttl_minutes: int = Field(default=30, ge=1)
    db_pool_size: int = Field(default=10, ge=1)
    # The event feed (GET /events): service tokens carry their own audience, so that neither
    # the user routes nor downstream services accept them, and the feed accepts nothing else.
    feed_audience: str = Field(default="userbus-feed", min_length=1)
    service_token_ttl_seconds: int = Field(default=300, ge=30)
    # Connections of the feed's own pool (infra.event_log.PostgresEventLog), opened on demand.
    feed_pool_size: int = Field(default=4, ge=1)
    # Allocations between young-generation collections in `userbus api` (Python's default is
    # 700); start-up's objects are frozen out of every collection. With the defaults, full
    # collections paused the API for up to a couple of hundred ms under load (bench/README.md).
    # 0 leaves the interpreter's setting alone.
    api_gc_threshold: int = Field(default=10_000, ge=0)
    # Failed-login counters live in Redis, so that every API instance sees the same counts.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of this deployment's Redis keys (several deployments may share one Redis).
    redis_key_prefix: str = Field(default="userbus", min_length=1)
    login_limit_per_username: int = Field(default=5, ge=1)
    login_limit_per_address: int = Field(default=50, ge=1)
    login_limit_window_seconds: int = Field(default=900, ge=1)
    # Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For is believed: behind
    # them, limits and audit lines see each client, not the proxy (auth/security/proxies.py).
    trusted_proxies: Annotated[list[Network], NoDecode, BeforeValidator(parse_networks)] = Field(
        default_factory=list
    )
    # Mails sent on request (password resets, verifications) and registrations, counted in
    # Redis per window: per target email (known or not: the count never tells), per client
    # address. A request over a limit is a 429 with Retry-After, and sends nothing.
    mail_limit_per_email: int = Field(default=5, ge=1)
    mail_limit_per_address: int = Field(default=20, ge=1)
    registration_limit_per_address: int = Field(default=20, ge=1)
    mail_limit_window_seconds: int = Field(default=3600, ge=1)
    # Email verification: a token mailed at registration and on an email change, valid this
    # long; where its mail points (`{token}` replaced; without it the mail holds the token).
    email_verification_ttl_minutes: int = Field(default=1440, ge=1)
    email_verification_url: str | None = None
    # Refuse logins (403 email_not_verified, told only with the right password) until the
    # account's email is verified.
    require_verified_email: bool = False
    # Mail (the fields of MailSettings): without an SMTP host, one file per message here.
    mailbox_dir: Path | None = None
    # Where the reset mail points; `{token}` is replaced. Without it the mail holds the token.
    password_reset_url: str | None = None
    # The registration saga: new accounts start `pending` until the profile service answers
    # on `profile_stream` (ProfileCreated activates, ProfileRejected deletes); one still
    # pending after the timeout is deleted by the sweeper of `userbus consume registrations`.
    require_profile: bool = False
    pending_registration_timeout_seconds: float = Field(default=300.0, gt=0)
    registration_sweep_interval_seconds: float = Field(default=10.0, gt=0)
    profile_stream: str = Field(default=PROFILE_STREAM, min_length=1)
    # TOTP second factor: a Fernet key (README, "Two-factor login") encrypting TOTP secrets
    # and keying recovery-code digests. Unset outside production: generated in data_dir.
    mfa_encryption_key: SecretStr | None = None
    # Keys that encrypted before a rotation: they still decrypt secrets (re-encrypted under
    # the current key at their next accepted code) and still key recovery-code digests.
    mfa_previous_encryption_keys: list[SecretStr] = Field(default_factory=list)
    # The issuer an authenticator app shows beside the account name.
    mfa_issuer: str = Field(default="userbus", min_length=1, max_length=64)
    # How long the challenge between the password and the code lives.
    mfa_challenge_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    # Wrong codes per user within login_limit_window_seconds before 429 (per address: the
    # login limit's login_limit_per_address).
    mfa_code_limit: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _feed_audience_is_not_the_users(self) -> "AuthSettings":
        if self.feed_audience == self.jwt_audience:
            raise ValueError("USERBUS_FEED_AUDIENCE must differ from USERBUS_JWT_AUDIENCE")
        return self

    @model_validator(mode="after")
    def _mfa_key_is_a_fernet_key(self) -> "AuthSettings":
        named = [("USERBUS_MFA_ENCRYPTION_KEY", self.mfa_encryption_key)] + [
            ("each of USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS", k)
            for k in self.mfa_previous_encryption_keys
        ]
        for name, secret in named:
            if secret is None:
                continue
            key = secret.get_secret_value().encode("ascii", "replace")
            try:
                if len(base64.urlsafe_b64decode(key)) != 32:
                    raise ValueError("wrong length")
            except ValueError as exc:
                raise ValueError(
                    f"{name} must be 32 bytes in URL-safe base64 "
                    "(python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())')"
                ) from exc
        return self

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> "AuthSettings":
        # Outside development a generated key would change on every deployment and differ
        # between instances, silently invalidating every token: refuse to start instead.
        # Whether the key is usable is checked where it is needed (`userbus api`): other
        # processes read these settings too, without the key mounted.
        if self.environment == "production" and not (
            self.jwt_private_key or self.jwt_private_key_file
        ):
            raise ValueError(
                "USERBUS_JWT_PRIVATE_KEY or USERBUS_JWT_PRIVATE_KEY_FILE is required in production"
            )
        return self

    @property
    def mailbox_path(self) -> Path:
        """The file mailbox used when no SMTP server is configured."""
        return self.mailbox_dir or self.data_dir / "mailbox"

    @property
    def generated_key_file(self) -> Path:
        """Where development keeps its generated signing key, so restarts keep tokens valid."""
        return self.data_dir / f"jwt-{self.jwt_algorithm.lower()}.pem"
