"""Wake-ups from the outbox's NOTIFY channel, for long-polling feed readers.

The outbox's insert trigger sends `NOTIFY <channel>` in the inserting transaction, so
PostgreSQL delivers it when that transaction commits. One LISTEN connection per API process
serves every waiting request; it opens on the first wait, and is opened again after it was
lost (readers then re-read once, since notifications may have been missed meanwhile).
"""

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from infra.settings import asyncpg_dsn

logger = logging.getLogger(__name__)


class OutboxNotifications:
    """Counts the notifications of one outbox channel; readers wait for the count to move."""

    def __init__(self, database_url: str, *, channel: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._channel = channel
        self._conn: asyncpg.Connection | None = None
        self._opening = asyncio.Lock()
        self._generation = 0
        self._changed = asyncio.Event()

    @property
    def generation(self) -> int:
        """Grows with every notification (and with every new LISTEN connection)."""
        return self._generation

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once a notification came after `seen` was read, or after `timeout` s."""
        try:
            await self._listening()
        except (OSError, asyncpg.PostgresError) as exc:
            # Without the LISTEN connection the caller still re-reads after the timeout.
            logger.warning("cannot listen on %s: %s", self._channel, exc)
        changed = self._changed
        if self._generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    async def close(self) -> None:
        """Close the LISTEN connection (a later wait opens a new one)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _listening(self) -> None:
        async with self._opening:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(self._channel, self._on_notify)
            self._conn = conn
            # Notifications sent before this connection listened are lost: wake everyone.
            self._on_notify()

    def _on_notify(self, *_: Any) -> None:
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
