"""build_context: the one wiring of the auth use cases from AuthSettings.

The API (auth/main.py), the registration saga (auth/saga/main.py) and `userbus users
create-admin` (userbus/admin.py) all build their AuthContext here; tests replace parts
through Overrides.
"""

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.adapters.mfa_challenges import RedisChallengeStore
from auth.adapters.principals import AsyncpgPrincipalStore, PrincipalStore
from auth.adapters.rate_limit import (
    LoginLimits,
    LoginRateLimiter,
    MailLimits,
    MailRateLimiter,
    RedisLoginRateLimiter,
    RedisMailRateLimiter,
)
from auth.adapters.service_clients import SqlAlchemyServiceClientRepository
from auth.domain.model import Principal, User
from auth.domain.passwords import BcryptPasswordHasher, PasswordHasher
from auth.security.audit import AuditLog
from auth.security.mfa_keys import LazyMfaKeys
from auth.security.service_tokens import ServiceTokenService
from auth.security.tokens import IssuedToken, TokenService, token_service
from auth.service_layer.context import AccessTokens, AuthContext, Lifetimes
from auth.service_layer.mfa_context import MfaKit
from auth.service_layer.service_clients import ServiceAccess, ServiceClients
from auth.service_layer.unit_of_work import MfaUnitOfWork, SqlAlchemyUnitOfWork, UnitOfWork
from auth.settings import AuthSettings
from infra.mail import Mailer, mailer_from
from infra.settings import asyncpg_dsn


@dataclass(frozen=True)
class Overrides:
    """Parts a test or an embedding program supplies instead of the configured ones."""

    hasher: PasswordHasher | None = None
    limiter: LoginRateLimiter | None = None
    mail_limiter: MailRateLimiter | None = None
    mailer: Mailer | None = None
    audit: AuditLog | None = None
    tokens: AccessTokens | None = None
    principals: PrincipalStore | None = None


def build_context(
    settings: AuthSettings, engine: AsyncEngine, overrides: Overrides | None = None
) -> tuple[AuthContext, AsyncExitStack]:
    """The AuthContext of `settings` on `engine`, and the stack that closes what it opened.

    The engine stays the caller's to dispose. Building connects to nothing and writes no
    file: Redis connects on first use, and the signing key is read (or, in development,
    generated) when a token is first issued or verified.
    """
    overrides = overrides or Overrides()
    resources = AsyncExitStack()
    hasher = overrides.hasher
    if hasher is None:
        own_hasher = BcryptPasswordHasher(settings.bcrypt_rounds, settings.hash_workers)
        resources.callback(own_hasher.close)
        hasher = own_hasher

    def uow_factory() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(engine, event_source=settings.event_source)

    redis_client = _redis_client(settings, resources)
    context = AuthContext(
        uow_factory=uow_factory,
        principals=overrides.principals or _principal_store(settings, resources),
        hasher=hasher,
        tokens=overrides.tokens or LazyTokenService(settings),
        limiter=overrides.limiter or _login_limiter(settings, redis_client),
        mail_limiter=overrides.mail_limiter or _mail_limiter(settings, redis_client),
        mailer=overrides.mailer or mailer_from(settings, settings.mailbox_path),
        audit=overrides.audit or AuditLog(),
        lifetimes=Lifetimes(
            refresh_token=timedelta(days=settings.refresh_token_ttl_days),
            password_reset=timedelta(minutes=settings.password_reset_ttl_minutes),
            email_verification=timedelta(minutes=settings.email_verification_ttl_minutes),
        ),
        password_reset_url=settings.password_reset_url,
        require_profile=settings.require_profile,
        mfa=_mfa_kit(settings, engine, resources),
        email_verification_url=settings.email_verification_url,
        require_verified_email=settings.require_verified_email,
    )
    return context, resources


def build_service_clients(engine: AsyncEngine, audit: AuditLog | None = None) -> ServiceClients:
    """What `userbus service ...` administers clients with (no signing key needed)."""
    return ServiceClients(SqlAlchemyServiceClientRepository(engine), audit or AuditLog())


def build_service_access(
    settings: AuthSettings, engine: AsyncEngine, *, keys: TokenService, context: AuthContext
) -> ServiceAccess:
    """What the token endpoint's client-credentials grant and the event feed work with."""
    service_tokens = ServiceTokenService(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.feed_audience,
        ttl=timedelta(seconds=settings.service_token_ttl_seconds),
    )
    return ServiceAccess(
        repository=SqlAlchemyServiceClientRepository(engine),
        audit=context.audit,
        tokens=service_tokens,
        user_tokens=context.tokens,
    )


class LazyTokenService:
    """The configured TokenService, loaded on first use.

    The saga and `create-admin` never issue or verify a token, so they never need the key:
    a deployment need not give it to them, and development does not generate one for them.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._service: TokenService | None = None

    def loaded(self) -> TokenService:
        """The TokenService, loading its keys now if this is the first use."""
        if self._service is None:
            self._service = token_service(self._settings)
        return self._service

    def issue(
        self, user: User, *, session_id: UUID | None = None, now: datetime | None = None
    ) -> IssuedToken:
        """TokenService.issue."""
        return self.loaded().issue(user, session_id=session_id, now=now)

    def verify(self, token: str) -> Principal:
        """TokenService.verify."""
        return self.loaded().verify(token)

    def jwks(self) -> dict[str, Any]:
        """TokenService.jwks."""
        return self.loaded().jwks()


def _principal_store(settings: AuthSettings, resources: AsyncExitStack) -> PrincipalStore:
    # Its own pool (of up to db_pool_size connections, beside the engine's), opened on the
    # first bearer check: the saga and create-admin never make one, so never open it.
    store = AsyncpgPrincipalStore(
        asyncpg_dsn(settings.database_url), max_size=settings.db_pool_size
    )
    resources.push_async_callback(store.close)
    return store


def _redis_client(settings: AuthSettings, resources: AsyncExitStack) -> redis.Redis:
    # Few, fast retries: with Redis down, logins and mails answer 503 at once, not hanging.
    # Connects on first use: the saga and create-admin, which never count, never connect.
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1),
    )  # fmt: skip
    resources.push_async_callback(client.aclose)
    return client


def _mail_limiter(settings: AuthSettings, client: redis.Redis) -> MailRateLimiter:
    limits = MailLimits(
        per_email=settings.mail_limit_per_email,
        per_address=settings.mail_limit_per_address,
        registrations_per_address=settings.registration_limit_per_address,
        window_seconds=settings.mail_limit_window_seconds,
    )
    return RedisMailRateLimiter(client, limits, prefix=f"{settings.redis_key_prefix}:mail")


def _login_limiter(settings: AuthSettings, client: redis.Redis) -> LoginRateLimiter:
    limits = LoginLimits(
        per_username=settings.login_limit_per_username,
        per_address=settings.login_limit_per_address,
        window_seconds=settings.login_limit_window_seconds,
    )
    return RedisLoginRateLimiter(client, limits, prefix=f"{settings.redis_key_prefix}:login")


def _mfa_kit(settings: AuthSettings, engine: AsyncEngine, resources: AsyncExitStack) -> MfaKit:
    # Its own Redis client, configured as the login limiter's (fail fast: 503, not a hang).
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1),
    )  # fmt: skip
    resources.push_async_callback(client.aclose)
    prefix = f"{settings.redis_key_prefix}:mfa"
    # Wrong codes: the login limiter's machinery, keyed by user id, in a key space of its own.
    limits = LoginLimits(
        per_username=settings.mfa_code_limit,
        per_address=settings.login_limit_per_address,
        window_seconds=settings.login_limit_window_seconds,
    )

    def uow_factory() -> MfaUnitOfWork:
        return SqlAlchemyUnitOfWork(engine, event_source=settings.event_source)

    return MfaKit(
        uow_factory=uow_factory,
        keys=LazyMfaKeys(settings).get,
        challenges=RedisChallengeStore(client, prefix=f"{prefix}:challenge"),
        limiter=RedisLoginRateLimiter(client, limits, prefix=f"{prefix}:codes"),
        issuer=settings.mfa_issuer,
        challenge_ttl_seconds=settings.mfa_challenge_ttl_seconds,
    )
