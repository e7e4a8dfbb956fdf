"""NotificationSender: delivers the queued mails, each once, with retries and backoff.

Each mail is claimed (`FOR UPDATE SKIP LOCKED`), handed to the Mailer and marked sent in one
transaction of its own, so several workers and processes share the queue without sending a
mail twice, and a failure costs at most the mail in hand.

Delivery to the mail server is at least once: a crash, or a lost database connection,
after the server accepted a mail and before the commit leaves the row pending, and that one
mail is sent again. The duplicate cannot be marked as such: `infra.mail.Message` has no
headers, so the Message-ID is generated per send and cannot carry the event id. Per event,
the outgoing table holds exactly one mail.
"""

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import DateTime, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from downstream_examples.notifier.tables import outgoing
from infra.mail import MailDeliveryError, Mailer, Message
from infra.workers import until_one_fails

logger = logging.getLogger(__name__)

# The time of the statement, not of the transaction's start: a send may take seconds.
NOW = func.clock_timestamp(type_=DateTime(timezone=True))


class NotificationSender:
    """Sends what `notifier.outgoing` holds through a Mailer, retrying with backoff.

    A failed attempt is retried after `retry_base_seconds`, doubling up to
    `retry_max_seconds`; after `max_attempts` the row is marked failed and logged.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        mailer: Mailer,
        *,
        workers: int = 2,
        max_attempts: int = 8,
        retry_base_seconds: float = 2.0,
        retry_max_seconds: float = 600.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.mailer = mailer
        self.workers = workers
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.poll_seconds = poll_seconds
        self.sent = 0
        self.retried = 0
        self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Send due mails with `workers` concurrent workers until `stop` is set.

        A worker that fails unexpectedly stops the others only once their mail in hand is
        sent and marked (until_one_fails): cancelled in between, that mail would go again.
        """
        await until_one_fails(stop, [self._work] * self.workers)

    async def send_due(self) -> int:
        """Send, one after another, every mail due now; return how many were sent."""
        before = self.sent
        while await self.send_next():
            pass
        return self.sent - before

    async def send_next(self) -> bool:
        """Attempt the mail that is due first, if any; False when none is due."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(outgoing)
                    .where(outgoing.c.status == "pending", outgoing.c.next_attempt_at <= func.now())
                    .order_by(outgoing.c.next_attempt_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if row is None:
                return False
            try:
                await self.mailer.send(Message(row.to_address, row.subject, row.body))
            except Exception as exc:
                await self._record_failure(conn, row, exc)
            else:
                await conn.execute(
                    update(outgoing)
                    .where(outgoing.c.event_id == row.event_id)
                    .values(
                        status="sent",
                        sent_at=NOW,
                        attempts=outgoing.c.attempts + 1,
                    )
                )
                self.sent += 1
        return True

    async def _record_failure(self, conn: AsyncConnection, row: Row[Any], exc: Exception) -> None:
        # A MailDeliveryError names recipient and subject, never the body; anything else
        # (a full disk under the file mailbox, a bug) is named by its class and text.
        reason = (
            exc.reason if isinstance(exc, MailDeliveryError) else f"{type(exc).__name__}: {exc}"
        )
        attempts = row.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_error": reason[:1000]}
        if attempts >= self.max_attempts:
            values["status"] = "failed"
            self.failed += 1
            logger.error(
                "notifier: giving up on the %s mail of event %s to %s after %d attempts: %s",
                row.kind, row.event_id, row.to_address, attempts, reason,
            )  # fmt: skip
        else:
            delay = min(self.retry_base_seconds * 2 ** (attempts - 1), self.retry_max_seconds)
            values["next_attempt_at"] = NOW + timedelta(seconds=delay)
            self.retried += 1
            logger.warning(
                "notifier: %s mail of event %s to %s failed (attempt %d), retrying in %.1f s: %s",
                row.kind, row.event_id, row.to_address, attempts, delay, reason,
            )  # fmt: skip
        await conn.execute(
            update(outgoing).where(outgoing.c.event_id == row.event_id).values(**values)
        )

    async def _work(self, stop: asyncio.Event) -> None:
        outages = 0
        while not stop.is_set():
            try:
                busy = await self.send_next()
                outages = 0
            except (OSError, SQLAlchemyError) as exc:
                # The database is away (or the tables are not there yet): wait, never die.
                busy = False
                outages += 1
                logger.warning("notifier: cannot reach the outgoing mails (%s); retrying", exc)
            if busy:
                continue
            pause = self.poll_seconds * 2 ** min(outages, 5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
