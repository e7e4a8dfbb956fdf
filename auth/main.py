"""create_app: the auth service's FastAPI application, wired from one settings object."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from auth.api.deps import Services
from auth.api.errors import install_error_handlers
from auth.api.routes import auth as auth_routes
from auth.api.routes import health, users
from auth.domain.passwords import BcryptPasswordHasher, PasswordHasher
from auth.security.tokens import TokenService, load_signing_key
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork, UnitOfWork
from auth.settings import AuthSettings


def create_app(settings: AuthSettings, *, hasher: PasswordHasher | None = None) -> FastAPI:
    """The API; engine, hasher threads and keys open in its lifespan and close after it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_pre_ping=True
        )
        own_hasher = BcryptPasswordHasher(settings.bcrypt_rounds, settings.hash_workers)

        def uow_factory() -> UnitOfWork:
            return SqlAlchemyUnitOfWork(engine, event_source=settings.event_source)

        app.state.services = Services(
            settings=settings,
            engine=engine,
            uow_factory=uow_factory,
            hasher=hasher or own_hasher,
            tokens=TokenService(
                load_signing_key(settings),
                algorithm=settings.jwt_algorithm,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            ),
        )
        try:
            yield
        finally:
            own_hasher.close()
            await engine.dispose()

    app = FastAPI(
        title="userbus auth",
        summary="Accounts, passwords and tokens; every change is an event.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (users.router, auth_routes.router, health.router):
        app.include_router(router)
    return app
