"""A catch-up subscription: the event log read from the beginning before the stream.

A group whose stream no longer holds what the group needs next (a new group on a trimmed
stream, a group left behind by trimming) reads the auth service's event log until it is
caught up; its reader noted where the stream ended before, and moves the group there after
(infra/redis/reader.py, infra/kafka/reader.py). Whatever the stream delivers from there
that the log already gave is a duplicate, absorbed by its sequence.
"""

import logging
import time

from consumers.settler import BatchSettler
from infra.event_log import EventLog

logger = logging.getLogger(__name__)

# How often a long catch-up says how far it is.
_PROGRESS_SECONDS = 5.0


class LogCatchUp:
    """Reads the log by position and applies it, page by page, until it is caught up."""

    def __init__(self, log: EventLog, settler: BatchSettler, *, group: str, page_size: int) -> None:
        self._log = log
        self._settler = settler
        self._group = group
        self._page_size = page_size

    async def __call__(self, after: int) -> int:
        """Apply the log's events after position `after`; the position caught up with."""
        position, events = after, 0
        said = time.monotonic()
        while True:
            page = await self._log.page(position, self._page_size)
            if page.rows:
                payloads = [payload for _, payload in page.rows]
                origins = [f"log@{at}" for at, _ in page.rows]
                await self._settler.settle(*self._settler.decode(payloads, origins))
                events += len(page.rows)
            position = page.next
            if page.caught_up:
                logger.warning(
                    "%s: caught up from the event log: %d events, up to position %d",
                    self._group, events, position,
                )  # fmt: skip
                return position
            if time.monotonic() - said > _PROGRESS_SECONDS:
                said = time.monotonic()
                logger.info("%s: catching up from the log: %d events", self._group, events)
