"""The outbox relay: committed outbox rows -> broker, in per-user order, woken by NOTIFY.

Each batch runs in one transaction: lock queued ids in `<schema>.outbox_pending` (`auth` unless
the relay is given another outbox schema, see producers/outbox.py; SKIP LOCKED, so
several relays share the work), publish their events, delete them from the queue, commit. A
crash before the commit leaves them queued, so they are published again: delivery is at least
once, and consumers absorb the duplicate by its sequence. Work is found through that queue,
which the outbox insert trigger fills in the writing transaction, never through a high-water
mark on the id: ids are taken at insert and commits land in another order, so a high-water
mark skips an event committed late with a smaller id. One worker's failure never cuts another
worker's batch short between its publish and its commit: the others finish, then all retry.

With a LossCheck (producers/loss.py), the relay also repairs a stream or topic that lost
data: checked before the first batch, periodically beside the workers, and at once when a
batch fails with StreamLostError.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from infra.observability.probes import Heartbeat
from infra.publishing import EventPublisher, PendingEvent
from infra.settings import asyncpg_dsn
from infra.witness import StreamLostError
from infra.workers import until_one_fails, wait, wait_any
from producers.loss import LossCheck
from producers.outbox import DEFAULT_SCHEMA, check_schema, notify_channel

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = notify_channel(DEFAULT_SCHEMA)

# What each PendingEvent field is selected as; the select list follows the field order, so
# a row becomes an event with one `PendingEvent._make`. The attributes come as text, formatted
# by PostgreSQL; `time` is the envelope's own string, so `ce_time` equals the JSON's `time`.
_EVENT_COLUMNS = {
    "outbox_id": "o.id",
    "subject": "o.subject::text",
    "payload": "o.payload::text",
    "event_id": "o.event_id::text",
    "type": "o.type",
    "source": "o.payload->>'source'",
    "time": "o.payload->>'time'",
    "sequence": "o.sequence::text",
}
EVENT_COLUMNS = ", ".join(f"{_EVENT_COLUMNS[field]} AS {field}" for field in PendingEvent._fields)
"""The select list of a PendingEvent, from an outbox aliased `o`."""

# The batch is locked first and joined after: joined in one step, the planner merge-joins
# the queue with the whole outbox from its first row, on every batch.
_LOCK_PENDING = f"""
    WITH batch AS (
        SELECT id FROM {{schema}}.outbox_pending
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
    SELECT {EVENT_COLUMNS}
    FROM batch b JOIN {{schema}}.outbox o ON o.id = b.id
    ORDER BY b.id
"""
# Queued events up to our last one: if they are all ours, no other relay holds an earlier
# event, and the per-user check below is not needed (the usual case: one relay, or relays
# taking turns).
_QUEUED_UP_TO = "SELECT count(*) FROM {schema}.outbox_pending WHERE id <= $1"
# Earlier queued events of the same users that another relay holds: an event of ours that
# comes after one of them must wait, or that user's events would reach the stream out of order.
_FOREIGN_PENDING = """
    SELECT subject::text AS subject, min(id) AS first_id
    FROM {schema}.outbox_pending
    WHERE subject = ANY($1::uuid[]) AND id < $2 AND NOT (id = ANY($3::bigint[]))
    GROUP BY subject
"""
_MARK_PUBLISHED = "DELETE FROM {schema}.outbox_pending WHERE id = ANY($1::bigint[])"


class OutboxRelay:
    """Moves committed events from the outbox to the broker until told to stop."""

    def __init__(
        self,
        dsn: str,
        publisher: EventPublisher,
        *,
        batch_size: int = 1000,
        workers: int = 1,
        fallback_poll_seconds: float = 5.0,
        schema: str = DEFAULT_SCHEMA,
        loss_check: LossCheck | None = None,
    ) -> None:
        self._dsn = dsn
        self.loss_check = loss_check
        self._channel = notify_channel(schema)
        # The statements below name the outbox schema; formatted once (checked identifier).
        self._sql = {
            name: query.format(schema=check_schema(schema))
            for name, query in (
                ("lock", _LOCK_PENDING),
                ("queued", _QUEUED_UP_TO),
                ("foreign", _FOREIGN_PENDING),
                ("mark", _MARK_PUBLISHED),
            )
        }
        self._publisher = publisher
        self._batch_size = batch_size
        self._workers = workers
        self._fallback_poll = fallback_poll_seconds
        self._wake = asyncio.Event()
        self.published = 0
        # Failed attempts by cause, and the loop's progress: what /metrics and /livez show.
        self.failures = {"database": 0, "broker": 0}
        self.heartbeat = Heartbeat(stale_after=max(30.0, 3 * fallback_poll_seconds))
        # Grows while the database or broker fails, back to its floor after any success.
        self._backoff = 0.1

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; database or broker failures are retried with backoff."""
        await self._publisher.connect()
        try:
            while not stop.is_set():
                try:
                    await self._run_connected(stop)
                except _PublishError as exc:  # nothing is lost: the batch's rows stay queued
                    self.failures["broker"] += 1
                    logger.warning("relay: publishing failed (%r); retrying", exc.__cause__)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    self.failures["database"] += 1
                    logger.warning("relay: database unavailable (%s); retrying", exc)
                except Exception as exc:  # a check of the broker (LossCheck) failed
                    self.failures["broker"] += 1
                    logger.warning("relay: the broker failed (%r); retrying", exc)
                self.heartbeat.beat()  # retrying is progress: the loop is not stuck
                await wait(stop, self._backoff)
                self._backoff = min(self._backoff * 2, 5.0)
        finally:
            await self._publisher.close()

    async def relay_pending(self, conn: asyncpg.Connection) -> tuple[int, int]:
        """Publish one batch of queued events: (published, held back for per-user order)."""
        async with conn.transaction():
            rows = await conn.fetch(self._sql["lock"], self._batch_size)
            if not rows:
                return 0, 0
            ready = await _in_user_order(conn, [PendingEvent._make(row) for row in rows], self._sql)
            if ready:
                try:
                    await self._publisher.publish(ready)
                except StreamLostError:
                    raise
                except Exception as exc:
                    raise _PublishError from exc
                await conn.execute(self._sql["mark"], [event.outbox_id for event in ready])
        self.published += len(ready)
        return len(ready), len(rows) - len(ready)

    async def _run_connected(self, stop: asyncio.Event) -> None:
        if self.loss_check is not None:
            # Before the first batch, and again after publishing failed: a loss is repaired,
            # or a repair made by another relay meanwhile followed.
            await self.loss_check.check()
        listener = await asyncpg.connect(self._dsn)
        try:
            await listener.add_listener(self._channel, self._on_notify)
            # Several workers, each with its own connection, overlap one batch's database
            # round trips with another's broker round trip; SKIP LOCKED gives them distinct
            # batches and the per-user check keeps each user's events in order between them.
            # until_one_fails: a failing worker lets the others finish their batch first.
            workers = [self._work] * self._workers
            if self.loss_check is not None:
                workers.append(self.loss_check.watch)
            await until_one_fails(stop, workers)
        finally:
            await listener.close()

    async def _work(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            while not stop.is_set():
                self.heartbeat.beat()
                # Cleared before reading, so a NOTIFY arriving mid-batch is not lost.
                self._wake.clear()
                generation = self.loss_check.generation if self.loss_check else None
                try:
                    published, held = await self.relay_pending(conn)
                except StreamLostError as exc:
                    if self.loss_check is None:
                        raise
                    # The batch stays queued; the repair queues the whole log before it.
                    await self.loss_check.after_loss(generation, exc.why)
                    continue
                self._backoff = 0.1
                if published:
                    logger.debug("relay: published %d events", published)
                elif held:
                    # Another worker or relay is publishing those users' earlier events and
                    # commits within milliseconds; no NOTIFY will announce it.
                    await wait(stop, 0.005)
                else:
                    await wait_any(stop, self._wake, self._fallback_poll)
        finally:
            await conn.close()

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()


async def _in_user_order(
    conn: asyncpg.Connection, events: Sequence[PendingEvent], sql: dict[str, str]
) -> Sequence[PendingEvent]:
    """The events no other relay's earlier event of the same user has to precede."""
    ids = [event.outbox_id for event in events]  # ascending: the batch is read in id order
    if await conn.fetchval(sql["queued"], ids[-1]) == len(ids):
        return events
    subjects = list({event.subject for event in events})
    foreign = await conn.fetch(sql["foreign"], subjects, ids[-1], ids)
    held = {row["subject"]: row["first_id"] for row in foreign}
    return [
        event
        for event in events
        if event.subject not in held or event.outbox_id < held[event.subject]
    ]


class _PublishError(Exception):
    """The publisher failed a batch (the cause says how); its rows stay queued."""


async def relay_backlog(database_url: str, schema: str = DEFAULT_SCHEMA) -> int:
    """How many committed events wait in the outbox queue for the relay."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        query = f"SELECT count(*) FROM {check_schema(schema)}.outbox_pending"
        count: int = await conn.fetchval(query)
        return count
    finally:
        await conn.close()
