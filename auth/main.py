"""create_app: the auth service's FastAPI application, wired from one settings object."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from auth.adapters.outbox_notifications import OutboxNotifications
from auth.api.deps import Services
from auth.api.errors import install_error_handlers
from auth.api.metrics import ApiMetrics
from auth.api.middleware import ObservedRequests
from auth.api.readiness import ApiReadiness
from auth.api.routes import auth as auth_routes
from auth.api.routes import (
    events,
    health,
    jwks,
    mfa,
    passwords,
    probes,
    sessions,
    users,
    verification,
)
from auth.bootstrap import Overrides, build_context, build_service_access
from auth.security.tokens import token_service
from auth.settings import AuthSettings
from infra.event_log import PostgresEventLog
from producers.outbox import DEFAULT_SCHEMA, notify_channel


def create_app(settings: AuthSettings, overrides: Overrides | None = None) -> FastAPI:
    """The API; engine, Redis, hasher threads and keys open in its lifespan, close after it."""
    given = overrides or Overrides()
    # This app's own registry: two apps in one process (tests) never count into each other.
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_pre_ping=True
        )
        try:
            # The API verifies tokens from its first request: a bad key stops it here.
            keys = token_service(settings)
            tokens = given.tokens or keys
            context, resources = build_context(settings, engine, replace(given, tokens=tokens))
            # The event feed reads the outbox through its own small pool, opened on demand.
            log = PostgresEventLog(
                settings.database_url, schema=DEFAULT_SCHEMA, pool_size=settings.feed_pool_size
            )
            wakeups = OutboxNotifications(
                settings.database_url, channel=notify_channel(DEFAULT_SCHEMA)
            )
            resources.push_async_callback(log.close)
            resources.push_async_callback(wakeups.close)
            metrics.watch_hasher(context.hasher)
            app.state.readiness = ApiReadiness(engine, settings.redis_url, context.tokens)
            resources.push_async_callback(app.state.readiness.close)
            async with resources:
                app.state.services = Services(
                    settings=settings,
                    engine=engine,
                    auth=context,
                    access=build_service_access(settings, engine, keys=keys, context=context),
                    event_log=log,
                    wakeups=wakeups,
                )
                yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="userbus auth",
        summary="Accounts, passwords and tokens; every change is an event.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.add_middleware(ObservedRequests, metrics=metrics)
    install_error_handlers(app)
    for router in (
        # Before users.router: /users/{username}/sessions and /mfa are longer paths, but
        # keeping the specific routes first leaves nothing to chance.
        sessions.router,
        mfa.admin_router,
        users.router,
        auth_routes.router,
        passwords.router,
        verification.router,
        jwks.router,
        health.router,
        events.router,
        mfa.router,
        probes.router,
    ):
        app.include_router(router)
    return app
