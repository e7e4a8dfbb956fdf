"""The audit service's processes: its consumer, and its read API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.settings import ConsumerSettings
from downstream_examples.audit.api import Services, router
from downstream_examples.audit.projection import AuditProjection
from downstream_examples.audit.settings import AuditSettings


def create_audit_consumer(settings: ConsumerSettings) -> ProjectionConsumer:
    """The audit projection following the user stream."""
    return create_consumer_app(settings, AuditProjection())


def create_audit_app(settings: AuditSettings) -> FastAPI:
    """The read API; its engine opens in the lifespan and closes after it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_pre_ping=True
        )
        app.state.services = Services(engine=engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="userbus audit",
        summary="Every user lifecycle event, as recorded, per user.",
        lifespan=lifespan,
    )
    app.include_router(router)
    return app
