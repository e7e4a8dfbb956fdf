"""Alembic migrations of the auth schema, runnable from code (`userbus migrate`)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.adapters.orm import SCHEMA
from infra.settings import sqlalchemy_url

# Any constant works; it only has to be the same for every process migrating this database.
_MIGRATION_LOCK = 0x75736572


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at this package, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the auth schema to `revision`; safe when several processes start at once."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with engine.begin() as conn:
            # Two API replicas starting together must not both run the same migration.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            # Alembic keeps its version table in the schema, so the schema comes first.
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            await conn.run_sync(_upgrade_sync, revision)
    finally:
        await engine.dispose()


def _upgrade_sync(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)
