"""The outbox relay: committed outbox rows -> broker, in per-user order, woken by NOTIFY.

Each batch runs in one transaction: lock unpublished rows (SKIP LOCKED, so several relays
share the work), publish them, mark them published, commit. A crash before the commit
leaves the rows unpublished, so they are published again: delivery is at least once, and
consumers absorb the duplicate by its sequence. Rows are chosen by their `published_at`
flag, not by a high-water mark on the id, because ids are taken at insert and commits land
in another order: a high-water mark skips a row committed late with a smaller id.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from producers.broker import EventPublisher, PendingEvent

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "userbus_outbox"

_LOCK_PENDING = """
    SELECT id, subject, payload::text AS payload
    FROM auth.outbox
    WHERE published_at IS NULL
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""
# Unpublished rows of the same users that another relay holds: an event of ours that comes
# after one of them must wait, or that user's events would reach the stream out of order.
_FOREIGN_PENDING = """
    SELECT subject, min(id) AS first_id
    FROM auth.outbox
    WHERE published_at IS NULL AND subject = ANY($1::uuid[]) AND NOT (id = ANY($2::bigint[]))
    GROUP BY subject
"""
_MARK_PUBLISHED = "UPDATE auth.outbox SET published_at = now() WHERE id = ANY($1::bigint[])"


class OutboxRelay:
    """Moves committed events from the outbox to the broker until told to stop."""

    def __init__(
        self,
        dsn: str,
        publisher: EventPublisher,
        *,
        batch_size: int = 1000,
        fallback_poll_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._publisher = publisher
        self._batch_size = batch_size
        self._fallback_poll = fallback_poll_seconds
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; database or broker failures are retried with backoff."""
        backoff = 0.1
        await self._publisher.connect()
        try:
            while not stop.is_set():
                try:
                    await self._run_connected(stop)
                    backoff = 0.1
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    logger.warning("relay: database unavailable (%s); retrying", exc)
                except Exception as exc:  # the broker's errors: nothing is lost, rows stay
                    logger.warning("relay: publishing failed (%r); retrying", exc)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 5.0)
        finally:
            await self._publisher.close()

    async def relay_pending(self, conn: asyncpg.Connection) -> int:
        """Publish one batch of pending events; the number published (0: nothing to do)."""
        async with conn.transaction():
            rows = await conn.fetch(_LOCK_PENDING, self._batch_size)
            if not rows:
                return 0
            ready = await _in_user_order(conn, rows)
            if ready:
                await self._publisher.publish(ready)
                await conn.execute(_MARK_PUBLISHED, [event.outbox_id for event in ready])
        self.published += len(ready)
        return len(ready)

    async def _run_connected(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            while not stop.is_set():
                # Cleared before reading, so a NOTIFY arriving mid-batch is not lost.
                self._wake.clear()
                published = await self.relay_pending(conn)
                if published:
                    logger.debug("relay: published %d events", published)
                    continue
                await _wait_any(stop, self._wake, self._fallback_poll)
        finally:
            await conn.close()

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()


async def _in_user_order(conn: asyncpg.Connection, rows: Sequence[Any]) -> list[PendingEvent]:
    ids = [row["id"] for row in rows]
    subjects = list({row["subject"] for row in rows})
    held = {r["subject"]: r["first_id"] for r in await conn.fetch(_FOREIGN_PENDING, subjects, ids)}
    return [
        PendingEvent(outbox_id=row["id"], subject=row["subject"], payload=row["payload"])
        for row in rows
        if row["subject"] not in held or row["id"] < held[row["subject"]]
    ]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
