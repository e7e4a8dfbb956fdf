"""The profile projection's in-database replay: a page of the log folded per user, in SQL.

The same fold as bulk.py, over the staged page (consumers/replay/in_database.py), as
ProfileProjection would apply the events one by one. A user with one event on the page
(most of them) is written straight from it: a registration inserted, an update set, a
deletion deleted. The others are folded: a user not tracked yet gets a row if
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

from downstream_examples.profiles.answers import OUTBOX_SCHEMA

REGISTERED, UPDATED, DELETED = "UserRegistered", "UserUpdated", "UserDeleted"
_PENDING = "coalesce(p.data ->> 'status', 'active') = 'pending'"
_ANSWER = (
    f"SELECT type FROM {OUTBOX_SCHEMA}.outbox o WHERE o.subject = p.subject AND o.sequence = 1"
)


class ProfileSqlRows:
    """SqlRows of ProfileProjection (see the module)."""

    handled = frozenset({REGISTERED, UPDATED, DELETED})

    async def refused(self, conn: asyncpg.Connection, schema: str, page: str) -> str | None:
        """Registrations the models must see: pending without an answer, of a tracked user."""
        tracked, late, unanswered = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE p.last IS NOT NULL), "
            "count(*) FILTER (WHERE p.last IS NULL AND p.n > 1), "
            f"count(*) FILTER (WHERE {_PENDING} AND NOT EXISTS ({_ANSWER})) "
            f"FROM {page} p WHERE p.type = '{REGISTERED}'"
        )
        if tracked:
            return f"{tracked} registrations of users already tracked"
        if late:
            return f"{late} registrations after other events of their user"
        if unanswered:
            return f"{unanswered} pending registrations the saga has not answered yet"
        return None

    async def write(self, conn: asyncpg.Connection, schema: str, page: str) -> None:
        """One statement: INSERT the new rows, UPDATE and DELETE the tracked users' rows."""
        await conn.execute(_write(schema, page))


def _last(value: str, where: str) -> str:
    """SQL: `value` (text, may be NULL) of the user's last event on the page where `where`.

    One aggregate, no sort: the largest of sequence (zero-padded) and value as one string
    in byte order; the user's sequences rise with their positions on the page (the page
    was checked for it). `v`/`n` keep a NULL value apart from no such event.
    """
    return (
        f"substr(max(lpad(sequence::text, 10, '0') || coalesce('v' || ({value}), 'n') "
        f'COLLATE "C") FILTER (WHERE {where}), 11)'
    )


def _value(last: str) -> str:
    return f"CASE WHEN left({last}, 1) = 'v' THEN substr({last}, 2) END"


@cache
def _write(schema: str, page: str) -> str:
    table = f'"{schema}".profiles'
    sets_email = f"(type = '{UPDATED}' AND jsonb_typeof(data -> 'email') = 'string')"
    sets_name = f"(type = '{UPDATED}' AND data ? 'display_name')"
    changes = f"({sets_email} OR {sets_name})"
    registered_at = "(p.data ->> 'registered_at')::timestamptz"
    return f"""
        WITH per AS MATERIALIZED (
            SELECT subject, bool_or(last IS NOT NULL) AS tracked,
                   bool_or(type = '{DELETED}') AS deleted,
                   -- one at most, and first: the page was refused otherwise
                   (array_agg(data) FILTER (WHERE type = '{REGISTERED}'))[1] AS reg,
                   {_last("data ->> 'email'", sets_email)} AS email,
                   {_last("data ->> 'display_name'", sets_name)} AS display_name,
                   {_last("data ->> 'updated_at'", changes)} AS updated_at
            FROM {page}
            WHERE m > 1 AND type IN ('{REGISTERED}', '{UPDATED}', '{DELETED}')
            GROUP BY subject
        ),
        folded AS MATERIALIZED (
            SELECT subject, tracked, deleted, reg,
                   email IS NOT NULL AS sets_email, {_value("email")} AS email,
                   display_name IS NOT NULL AS sets_name,
                   {_value("display_name")} AS display_name,
                   ({_value("updated_at")})::timestamptz AS updated_at
            FROM per
        ),
        -- No ON CONFLICT: a user the shadow does not track has no row in it.
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
        ),
        changed AS (
            UPDATE {table} AS t SET
                email = CASE WHEN c.sets_email THEN c.email ELSE t.email END,
                display_name = CASE WHEN c.sets_name THEN c.display_name ELSE t.display_name END,
                updated_at = c.updated_at
            FROM folded c
            WHERE t.user_id = c.subject AND c.tracked AND NOT c.deleted
              AND (c.sets_email OR c.sets_name)
        ),
        removed AS (
            DELETE FROM {table} AS t USING folded c
            WHERE t.user_id = c.subject AND c.tracked AND c.deleted
        ),
        -- The users with one event on the page: straight from it.
        added_one AS (
            INSERT INTO {table} (user_id, username, email, registered_at, display_name, updated_at)
            SELECT subject, data ->> 'username', data ->> 'email', {registered_at},
                   data ->> 'display_name', {registered_at}
            FROM {page} p
            WHERE m = 1 AND type = '{REGISTERED}' AND last IS NULL
              AND (NOT {_PENDING} OR ({_ANSWER}) = 'ProfileCreated')
        ),
        changed_one AS (
            UPDATE {table} AS t SET
                email = CASE WHEN {sets_email} THEN p.data ->> 'email' ELSE t.email END,
                display_name = CASE WHEN {sets_name} THEN p.data ->> 'display_name'
                                    ELSE t.display_name END,
                updated_at = (p.data ->> 'updated_at')::timestamptz
            FROM {page} p
            WHERE t.user_id = p.subject AND p.m = 1 AND p.type = '{UPDATED}'
              AND p.last IS NOT NULL AND {changes}
        )
        DELETE FROM {table} AS t USING {page} p
        WHERE t.user_id = p.subject AND p.m = 1 AND p.type = '{DELETED}' AND p.last IS NOT NULL
    """
