"""The asyncpg connection under a SQLAlchemy one, for the replay's hand-written statements."""

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection


async def asyncpg_of(conn: AsyncConnection) -> asyncpg.Connection:
    """`conn`'s asyncpg connection (COPY, prepared statements, its own transactions)."""
    raw = await conn.get_raw_connection()
    found: asyncpg.Connection | None = raw.driver_connection
    assert found is not None
    return found
