"""A consumer healing from the auth service's event log: sequence gaps, and a catch-up.

The outbox keeps every committed event, so a consumer that can read it (the auth database,
`USERBUS_EVENT_LOG_URL`, or the event feed, `USERBUS_FEED_URL`) repairs what the broker lost:

- `GapFiller`: a user whose next event jumps ahead of the projection's position (events
  trimmed, lost with a broker, or a group that started late) gets the events in between from
  the log, applied in order in the same transaction, before the event that showed the gap.
- `LogCatchUp` (consumers/catch_up.py): a group whose stream no longer holds what the group
  needs next (a new group on a trimmed stream) reads the log from the beginning until it is
  caught up; the reader then moves the group to where the stream ended before the log was
  read (infra/reading.py).

With neither configured, a gap is applied with a warning and a trimmed stream is read from
its first entry, as before.
"""

import asyncio
import logging
from collections.abc import Mapping
from uuid import UUID

from consumers.settings import ConsumerSettings
from events import Envelope
from infra.event_log import EventLog, PostgresEventLog
from infra.feed import ClientCredentials, HttpFeedLog

logger = logging.getLogger(__name__)

# Users whose missing events are asked for at once.
_CONCURRENT_BACKFILLS = 8


def event_log_for(settings: ConsumerSettings) -> EventLog | None:
    """The event log the consumer heals from: the auth database, else the feed, else none."""
    if settings.event_log_url is not None:
        return PostgresEventLog(settings.event_log_url)
    if settings.feed_url is None:
        return None
    if settings.feed_client_id is not None and settings.feed_client_secret is not None:
        # The token endpoint beside the feed: http://auth:8000/events -> .../auth/token.
        root = settings.feed_url.rstrip("/").removesuffix("/events")
        credentials = ClientCredentials(
            f"{root}/auth/token",
            settings.feed_client_id,
            settings.feed_client_secret.get_secret_value(),
        )
        return HttpFeedLog(settings.feed_url, "", credentials=credentials)
    if settings.feed_token is None:
        raise ValueError("USERBUS_FEED_URL needs USERBUS_FEED_TOKEN or a client id and secret")
    return HttpFeedLog(settings.feed_url, settings.feed_token.get_secret_value())


class LogUnavailableError(ConnectionError):
    """The log could not give a user's missing events: the batch is tried again, in place.

    A ConnectionError, so the consumer retries it as it retries a database outage
    (consumers/failures.py): applying the event without its predecessors would lose them.
    """


class GapFiller:
    """Fetches, per user, the events between the projection's position and a later event."""

    def __init__(self, log: EventLog, group: str) -> None:
        self.log = log
        self._group = group
        self._slots = asyncio.Semaphore(_CONCURRENT_BACKFILLS)

    async def missing(self, gaps: Mapping[UUID, tuple[int, int]]) -> dict[UUID, list[Envelope]]:
        """For each user, the events after `gaps[user][0]` and before `gaps[user][1]`."""
        found = await asyncio.gather(*(self._between(u, *span) for u, span in gaps.items()))
        missing = dict(zip(gaps, found, strict=True))
        logger.warning(
            "%s: %d users' sequences jumped; %d missing events taken from the log",
            self._group, len(gaps), sum(len(events) for events in missing.values()),
        )  # fmt: skip
        return missing

    async def _between(self, user: UUID, after: int, before: int) -> list[Envelope]:
        async with self._slots:
            try:
                events = await self.log.events_of(user, after)
            except Exception as exc:
                raise LogUnavailableError(f"the log did not give user {user}'s events") from exc
        return [event for event in events if event.sequence < before]
