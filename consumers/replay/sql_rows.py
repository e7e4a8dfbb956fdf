"""What a projection offers the in-database replay (consumers/replay/in_database.py)."""

from typing import Protocol

import asyncpg

PAGE_TABLE = "replay_page"


class SqlRows(Protocol):
    """A projection's in-database replay: its rows from the staged page, by SQL.

    The page is the temporary table `replay_page`, one row per event in log order: `pos`
    (the log position), `subject` (uuid), `sequence`, `type`, `data` (jsonb, checked as its
    model reads it), `n` (the event's rank among its user's events on the page, from 1) and
    `last` (the user's tracked sequence before the page; NULL: not tracked yet). Every
    user's events on it follow on from `last` without gap or repeat. `refused` says why
    the page must go through the models instead (None: it need not), before anything is
    written; `write` then changes the projection's tables in `schema` for the whole page.
    """

    handled: frozenset[str]
    """The event types the projection changes its view for (the others are only tracked)."""

    async def refused(self, conn: asyncpg.Connection, schema: str) -> str | None:
        """Why this page is not for SQL, or None."""
        ...

    async def write(self, conn: asyncpg.Connection, schema: str) -> None:
        """Apply the staged page to the tables in `schema`."""
        ...
