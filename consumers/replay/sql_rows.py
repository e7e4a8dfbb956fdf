"""What a projection offers the in-database replay (consumers/replay/in_database.py)."""

from typing import Protocol

import asyncpg


class SqlRows(Protocol):
    """A projection's in-database replay: its rows from the staged page, by SQL.

    The page is a table (`page`, schema-qualified), one row per event: `pos` (the log
    position), `subject` (uuid), `sequence`, `type`, `data` (jsonb, checked as its model
    reads it), `n` (the event's rank among its user's events on the page, from 1, in log
    order), `m` (the user's events on the page) and `last` (the user's tracked sequence
    before the page; NULL: not tracked yet). Every user's events on it follow on from
    `last` without gap or repeat. `refused` says why the page must go through the models
    instead (None: it need not), before anything is written; `write` then changes the
    projection's tables in `schema` for the whole page.
    """

    handled: frozenset[str]
    """The event types the projection changes its view for (the others are only tracked)."""

    async def refused(self, conn: asyncpg.Connection, schema: str, page: str) -> str | None:
        """Why this page is not for SQL, or None."""
        ...

    async def write(self, conn: asyncpg.Connection, schema: str, page: str) -> None:
        """Apply the staged page to the tables in `schema`."""
        ...
