"""The profile service's two processes: the consumer and the read API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.api import install_error_handlers, router
from downstream_examples.profiles.projection import ProfileProjection
from infra.settings import DatabaseSettings


def create_profile_consumer(settings: ConsumerSettings) -> ProjectionConsumer:
    """The profile projection following the user stream."""
    return create_consumer_app(settings, ProfileProjection())


def create_profiles_app(
    settings: DatabaseSettings, *, engine: AsyncEngine | None = None
) -> FastAPI:
    """The read API; its engine opens in the lifespan (a given `engine` stays the caller's)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = engine or create_async_engine(settings.database_url, pool_pre_ping=True)
        app.state.engine = opened
        try:
            yield
        finally:
            if engine is None:
                await opened.dispose()

    app = FastAPI(
        title="userbus profiles",
        summary="Profiles of userbus users, kept from their lifecycle events.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    return app


def profiles_app_from_env() -> FastAPI:
    """The read API configured from the environment.

    For `uvicorn --factory downstream_examples.profiles.main:profiles_app_from_env`.
    """
    return create_profiles_app(DatabaseSettings())
