"""The replay benchmark's history: N events written by SQL, and the profile rows they give.

User i (1..U, U = 0.6 N) registers (sequence 1); those with i % 12 < 5 then update their
profile (a new display name, and every second one a new address); those with i % 6 == 1
change their password; those with i % 12 == 11 are deleted. About 60 % registrations,
25 % updates, 10 % password changes and 5 % deletions. The log holds them in phases (all
registrations, then the updates, ...), so a user's later events come many pages after
their registration, as in a real history. `profile_rows` computes the rows the history
gives, with the same formulas, for the raw COPY baseline and the check of the replay.
Each row carries the stamp the outbox's writer would give it (`contract`, checked against
`stamp()` on a 1 % sample), or none with `stamped=False`, as rows written before it.
"""

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consumers.replay.stamp import contract, stamp

BASE = datetime(2026, 1, 1, tzinfo=UTC)
SHARE_OF_USERS = 0.6

# Per phase: user i's events, their sequence by formula, the envelope JSON built in SQL.
# Every time is BASE plus milliseconds, written as RFC 3339 UTC like the auth service does.
_PHASES: dict[str, tuple[str, str, str]] = {
    "UserRegistered": (
        "true",
        "1",
        "jsonb_build_object('user_id', s, 'username', 'u' || i, 'email', 'u' || i || "
        "'@example.com', 'role', 'user', 'registered_at', t, 'display_name', "
        "CASE WHEN i % 3 = 0 THEN NULL ELSE 'Name ' || i END, 'status', 'active')",
    ),
    "UserUpdated": (
        "i % 12 < 5",
        "2",
        "jsonb_build_object('user_id', s, 'updated_at', t, 'display_name', 'Shown ' || i) || "
        "CASE WHEN i % 2 = 0 THEN jsonb_build_object('email', 'u' || i || '@example.org') "
        "ELSE '{}'::jsonb END",
    ),
    "PasswordChanged": (
        "i % 6 = 1",
        "2 + (i % 12 < 5)::int",
        "jsonb_build_object('user_id', s, 'changed_at', t, 'reason', 'change')",
    ),
    "UserDeleted": (
        "i % 12 = 11",
        "2 + (i % 12 < 5)::int + (i % 6 = 1)::int",
        "jsonb_build_object('user_id', s, 'username', 'u' || i, 'deleted_at', t)",
    ),
}
_INSERT = """
    WITH rows AS (
        SELECT i, md5('bench-user-' || i)::uuid AS s, gen_random_uuid() AS event_id,
               {sequence} AS seq,
               to_char((timestamptz '2026-01-01 00:00:00+00' + ($3 + i) * interval '1 ms')
                       AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS t
        FROM generate_series($1::int, $2::int) AS i WHERE {where}
    )
    INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at, contract)
    SELECT event_id, s, seq, '{kind}',
           jsonb_build_object(
               'specversion', '1.0', 'id', event_id, 'source', '/userbus/auth',
               'type', '{kind}', 'subject', s, 'time', t,
               'datacontenttype', 'application/json', 'sequence', seq, 'data', {data}),
           t::timestamptz, $4
    FROM rows ORDER BY i
"""
_CHUNK = 200_000


def users_for(events: int) -> int:
    """How many users make about `events` events."""
    return max(1, round(events * SHARE_OF_USERS))


def user_id(i: int) -> uuid.UUID:
    """User i's id, as the SQL draws it (md5 of a name)."""
    return uuid.UUID(hashlib.md5(f"bench-user-{i}".encode()).hexdigest())


async def seed(conn: asyncpg.Connection, users: int, *, stamped: bool = True) -> int:
    """Write the history of `users` users into auth.outbox; the number of events.

    `stamped`: each row with the stamp the outbox's writer gives it (consumers/replay/
    stamp.py); without, as rows written before the stamp existed.
    """
    for phase, (kind, (where, sequence, data)) in enumerate(_PHASES.items()):
        sql = _INSERT.format(where=where, sequence=sequence, kind=kind, data=data)
        for start in range(1, users + 1, _CHUNK):
            await conn.execute(
                sql,
                start,
                min(start + _CHUNK - 1, users),
                phase * users,
                contract(kind) if stamped else None,
            )
    # The stamp is the writer's (producers/outbox.py): prove a sample carries the stamp
    # the writer would give it.
    for payload, given in await conn.fetch(
        "SELECT payload::text, contract FROM auth.outbox TABLESAMPLE BERNOULLI (1)"
    ):
        if given is not None and stamp(payload) != given:
            raise SystemExit(f"the writer would stamp {payload} otherwise than {given}")
    await conn.execute("VACUUM ANALYZE auth.outbox")
    count: int = await conn.fetchval("SELECT count(*) FROM auth.outbox")
    return count


def _at(phase: int, users: int, i: int) -> datetime:
    return BASE + timedelta(milliseconds=phase * users + i)


def profile_rows(users: int) -> list[tuple[Any, ...]]:
    """The profiles.profiles rows the history gives, in its column order (see the module)."""
    rows = []
    for i in range(1, users + 1):
        if i % 12 == 11:
            continue
        registered = _at(0, users, i)
        email, name, updated = f"u{i}@example.com", None if i % 3 == 0 else f"Name {i}", registered
        if i % 12 < 5:
            name, updated = f"Shown {i}", _at(1, users, i)
            if i % 2 == 0:
                email = f"u{i}@example.org"
        rows.append((user_id(i), f"u{i}", email, registered, name, updated))
    return rows
