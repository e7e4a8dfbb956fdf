"""Reading the event feed: a page of the event log, long-polling when nothing is new.

The log (infra.event_log) decides what is safe to hand out: never an event past one that is
still being committed with a smaller position. This module only adds the waiting: a reader
that is caught up may ask to wait up to `wait` seconds for the next event. It wakes on the
outbox's NOTIFY (sent when an inserting transaction commits), and re-reads at least every
FALLBACK_POLL_SECONDS in case a notification was missed.
"""

import asyncio
from typing import Protocol

from infra.event_log import EventLog, LogPage

FALLBACK_POLL_SECONDS = 1.0
MAX_WAIT_SECONDS = 30.0


class Wakeups(Protocol):
    """Tells waiting readers that the outbox may have new events."""

    @property
    def generation(self) -> int:
        """A counter that grows with every notification."""
        ...

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once `generation` has moved past `seen`, or after `timeout` seconds."""
        ...


async def read_feed(
    log: EventLog, wakeups: Wakeups, *, after: int, limit: int, wait: float = 0.0
) -> LogPage:
    """Events after `after` (at most `limit`); if there are none, wait up to `wait` seconds.

    The page returned is the first that has events, or the last empty one when the time is
    up; its `next` is where the reader goes on either way.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_WAIT_SECONDS)
    while True:
        # Read the counter before the log: a commit after the read moves it, so no wake-up
        # between the read and the wait is lost.
        seen = wakeups.generation
        page = await log.page(after, limit)
        remaining = deadline - loop.time()
        if page.rows or remaining <= 0:
            return page
        after = page.next
        await wakeups.wait(seen, min(remaining, FALLBACK_POLL_SECONDS))
