"""The lazy directory's processes: its HTTP API and its event consumer."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.jwks import JwksVerifier
from consumers.settings import ConsumerSettings
from downstream_examples.lazy_directory.api import Services, install_error_handlers, router
from downstream_examples.lazy_directory.projection import DirectoryProjection
from downstream_examples.lazy_directory.settings import DirectorySettings


def create_directory_consumer(settings: ConsumerSettings) -> ProjectionConsumer:
    """The directory projection following the user stream."""
    return create_consumer_app(settings, DirectoryProjection())


def create_directory_app(
    settings: DirectorySettings, verifier: JwksVerifier | None = None
) -> FastAPI:
    """The directory API; a verifier passed in stays the caller's to close."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(settings.database_url, pool_pre_ping=True)
        own_verifier = verifier is None
        token_verifier = verifier or JwksVerifier(
            settings.jwks_url, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        try:
            # Tokens may arrive before the consumer has ever run: the tables must exist.
            async with engine.begin() as conn:
                await DirectoryProjection().create_tables(conn)
            app.state.services = Services(engine=engine, verifier=token_verifier)
            yield
        finally:
            if own_verifier:
                await token_verifier.aclose()
            await engine.dispose()

    app = FastAPI(
        title="userbus lazy directory",
        summary="Members discovered from verified access tokens, kept right by user events.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    return app
