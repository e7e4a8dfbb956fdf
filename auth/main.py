"""create_app: the auth service's FastAPI application, wired from one settings object."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as redis
from fastapi import FastAPI
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.ext.asyncio import create_async_engine

from auth.adapters.rate_limit import LoginLimits, LoginRateLimiter, RedisLoginRateLimiter
from auth.api.deps import Services
from auth.api.errors import install_error_handlers
from auth.api.routes import auth as auth_routes
from auth.api.routes import health, jwks, passwords, users
from auth.domain.passwords import BcryptPasswordHasher, PasswordHasher
from auth.security.audit import AuditLog
from auth.security.tokens import TokenService, load_previous_public_keys, load_signing_key
from auth.service_layer.context import AuthContext, Lifetimes
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork, UnitOfWork
from auth.settings import AuthSettings
from infra.mail import Mailer, mailer_from


@dataclass(frozen=True)
class Overrides:
    """Parts a test or an embedding program supplies instead of the configured ones."""

    hasher: PasswordHasher | None = None
    limiter: LoginRateLimiter | None = None
    mailer: Mailer | None = None
    audit: AuditLog | None = None


def create_app(settings: AuthSettings, overrides: Overrides = Overrides()) -> FastAPI:
    """The API; engine, Redis, hasher threads and keys open in its lifespan, close after it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_pre_ping=True
        )
        # Few, fast retries: with Redis down, logins answer 503 at once instead of hanging.
        redis_client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
        )  # fmt: skip
        own_hasher = BcryptPasswordHasher(settings.bcrypt_rounds, settings.hash_workers)

        def uow_factory() -> UnitOfWork:
            return SqlAlchemyUnitOfWork(engine, event_source=settings.event_source)

        context = AuthContext(
            uow_factory=uow_factory,
            hasher=overrides.hasher or own_hasher,
            tokens=_token_service(settings),
            limiter=overrides.limiter
            or RedisLoginRateLimiter(
                redis_client, _limits(settings), prefix=f"{settings.redis_key_prefix}:login"
            ),
            mailer=overrides.mailer or mailer_from(settings, settings.mailbox_path),
            audit=overrides.audit or AuditLog(),
            lifetimes=Lifetimes(
                refresh_token=timedelta(days=settings.refresh_token_ttl_days),
                password_reset=timedelta(minutes=settings.password_reset_ttl_minutes),
            ),
            password_reset_url=settings.password_reset_url,
        )
        app.state.services = Services(settings=settings, engine=engine, auth=context)
        try:
            yield
        finally:
            own_hasher.close()
            await redis_client.aclose()
            await engine.dispose()

    app = FastAPI(
        title="userbus auth",
        summary="Accounts, passwords and tokens; every change is an event.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (
        users.router,
        auth_routes.router,
        passwords.router,
        jwks.router,
        health.router,
    ):
        app.include_router(router)
    return app


def _token_service(settings: AuthSettings) -> TokenService:
    return TokenService(
        load_signing_key(settings),
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        previous_public_keys=load_previous_public_keys(settings),
    )


def _limits(settings: AuthSettings) -> LoginLimits:
    return LoginLimits(
        per_username=settings.login_limit_per_username,
        per_address=settings.login_limit_per_address,
        window_seconds=settings.login_limit_window_seconds,
    )
