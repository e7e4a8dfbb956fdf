"""The profile projection's in-database replay: a page of the log folded per user, in SQL.

The same fold as bulk.py, over the staged page (consumers/replay/in_database.py), as
ProfileProjection would apply the events one by one: a user not tracked yet gets a row if
the page registers them (first on the page) and does not delete them, their updates on
the page merged into it; a tracked user's updates merge into one UPDATE (only the fields
present change; an email present as null changes nothing; `updated_at` is the last
update's that changed something) and a deletion wins. A pending registration is taken only
if the saga's answer is already in the answers' outbox (answers.py follows it as given:
ProfileCreated makes the row, anything else none); without an answer, or a registration of
a user already tracked or not first on the page, the page is left to the models.
"""

from functools import cache

import asyncpg

from consumers.replay.sql_rows import PAGE_TABLE
from downstream_examples.profiles.answers import OUTBOX_SCHEMA

REGISTERED, UPDATED, DELETED = "UserRegistered", "UserUpdated", "UserDeleted"
_PENDING = "coalesce(p.data ->> 'status', 'active') = 'pending'"
_ANSWER = (
    f"SELECT type FROM {OUTBOX_SCHEMA}.outbox o WHERE o.subject = p.subject AND o.sequence = 1"
)


class ProfileSqlRows:
    """SqlRows of ProfileProjection (see the module)."""

    handled = frozenset({REGISTERED, UPDATED, DELETED})

    async def refused(self, conn: asyncpg.Connection, schema: str) -> str | None:
        """Registrations the models must see: pending without an answer, of a tracked user."""
        tracked, late, unanswered = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE p.last IS NOT NULL), "
            "count(*) FILTER (WHERE p.last IS NULL AND p.n > 1), "
            f"count(*) FILTER (WHERE {_PENDING} AND NOT EXISTS ({_ANSWER})) "
            f"FROM {PAGE_TABLE} p WHERE p.type = '{REGISTERED}'"
        )
        if tracked:
            return f"{tracked} registrations of users already tracked"
        if late:
            return f"{late} registrations after other events of their user"
        if unanswered:
            return f"{unanswered} pending registrations the saga has not answered yet"
        return None

    async def write(self, conn: asyncpg.Connection, schema: str) -> None:
        """One statement: INSERT the new rows, UPDATE and DELETE the tracked users' rows."""
        await conn.execute(_write(schema))


@cache
def _write(schema: str) -> str:
    # Each user's last update that sets a field is found by its position, then joined:
    # ordered aggregates would sort every user's events apart (PostgreSQL 15).
    table = f'"{schema}".profiles'
    sets_email = f"(type = '{UPDATED}' AND jsonb_typeof(data -> 'email') = 'string')"
    sets_name = f"(type = '{UPDATED}' AND data ? 'display_name')"
    return f"""
        WITH per AS MATERIALIZED (
            SELECT subject, bool_or(last IS NOT NULL) AS tracked,
                   bool_or(type = '{DELETED}') AS deleted,
                   min(pos) FILTER (WHERE type = '{REGISTERED}') AS registered,
                   max(pos) FILTER (WHERE {sets_email}) AS email,
                   max(pos) FILTER (WHERE {sets_name}) AS named,
                   max(pos) FILTER (WHERE {sets_email} OR {sets_name}) AS changed
            FROM {PAGE_TABLE}
            WHERE type IN ('{REGISTERED}', '{UPDATED}', '{DELETED}')
            GROUP BY subject
        ),
        folded AS MATERIALIZED (
            SELECT per.subject, per.tracked, per.deleted, r.data AS reg,
                   per.email IS NOT NULL AS sets_email, e.data ->> 'email' AS email,
                   per.named IS NOT NULL AS sets_name, n.data ->> 'display_name' AS display_name,
                   (c.data ->> 'updated_at')::timestamptz AS updated_at
            FROM per
            LEFT JOIN {PAGE_TABLE} r ON r.pos = per.registered
            LEFT JOIN {PAGE_TABLE} e ON e.pos = per.email
            LEFT JOIN {PAGE_TABLE} n ON n.pos = per.named
            LEFT JOIN {PAGE_TABLE} c ON c.pos = per.changed
        ),
        added AS (
            INSERT INTO {table} (user_id, username, email, registered_at, display_name, updated_at)
            SELECT subject, reg ->> 'username',
                   CASE WHEN sets_email THEN email ELSE reg ->> 'email' END,
                   (reg ->> 'registered_at')::timestamptz,
                   CASE WHEN sets_name THEN display_name ELSE reg ->> 'display_name' END,
                   coalesce(updated_at, (reg ->> 'registered_at')::timestamptz)
            FROM folded p
            WHERE NOT tracked AND NOT deleted AND reg IS NOT NULL
              AND (coalesce(reg ->> 'status', 'active') <> 'pending'
                   OR ({_ANSWER}) = 'ProfileCreated')
            ON CONFLICT (user_id) DO NOTHING
        ),
        changed AS (
            UPDATE {table} AS t SET
                email = CASE WHEN c.sets_email THEN c.email ELSE t.email END,
                display_name = CASE WHEN c.sets_name THEN c.display_name ELSE t.display_name END,
                updated_at = c.updated_at
            FROM folded c
            WHERE t.user_id = c.subject AND c.tracked AND NOT c.deleted
              AND (c.sets_email OR c.sets_name)
        )
        DELETE FROM {table} AS t USING folded c
        WHERE t.user_id = c.subject AND c.tracked AND c.deleted
    """
