"""The expiry sweep: accounts pending for longer than the timeout are deleted."""

import asyncio
import contextlib
import logging
from datetime import timedelta

from auth.service_layer.context import AuthContext
from auth.service_layer.registrations import expire_registrations

logger = logging.getLogger(__name__)


class PendingRegistrationSweeper:
    """Every `interval`, compensates the accounts still pending after `timeout`.

    A batch of at most `batch_size` accounts per transaction, repeated while batches come
    back full. Several sweepers may run (one per saga process): SKIP LOCKED splits the work.
    """

    def __init__(
        self,
        ctx: AuthContext,
        *,
        timeout: timedelta,
        interval: float,
        batch_size: int = 100,
    ) -> None:
        self._ctx = ctx
        self._timeout = timeout
        self._interval = interval
        self._batch_size = batch_size
        self.expired = 0

    async def sweep(self) -> int:
        """Expire every overdue pending account now; how many."""
        total = 0
        while True:
            count = await expire_registrations(
                self._ctx, timeout=self._timeout, limit=self._batch_size
            )
            total += count
            if count < self._batch_size:
                break
        if total:
            logger.info("expired %d pending registrations", total)
        self.expired += total
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until `stop` is set; a database outage is logged and retried next round."""
        while not stop.is_set():
            try:
                await self.sweep()
            except (OSError, ConnectionError) as exc:
                logger.warning("registration sweep: database unavailable (%s)", exc)
            except Exception:
                logger.exception("registration sweep failed; retrying next round")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
