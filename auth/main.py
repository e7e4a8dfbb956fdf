"""create_app: the auth service's FastAPI application, wired from one settings object."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from auth.api.deps import Services
from auth.api.errors import install_error_handlers
from auth.api.routes import auth as auth_routes
from auth.api.routes import health, jwks, passwords, users
from auth.bootstrap import Overrides, build_context
from auth.security.tokens import token_service
from auth.settings import AuthSettings


def create_app(settings: AuthSettings, overrides: Overrides | None = None) -> FastAPI:
    """The API; engine, Redis, hasher threads and keys open in its lifespan, close after it."""
    given = overrides or Overrides()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_pre_ping=True
        )
        try:
            # The API verifies tokens from its first request: a bad key stops it here.
            tokens = given.tokens or token_service(settings)
            context, resources = build_context(settings, engine, replace(given, tokens=tokens))
            async with resources:
                app.state.services = Services(settings=settings, engine=engine, auth=context)
                yield
        finally:
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
