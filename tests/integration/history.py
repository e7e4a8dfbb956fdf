"""Histories of valid events for replay tests, built with the contract's models, seeded by COPY."""

import random
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from events import (
    Envelope,
    Event,
    PasswordChanged,
    UserDeleted,
    UserRegistered,
    UserRoleChanged,
    UserUpdated,
    to_envelope,
)
from infra.settings import asyncpg_dsn

SOURCE = "/test/replay"


def make_history(
    events: int, *, seed: int = 7, now: datetime | None = None, pending_every: int = 0
) -> list[Envelope]:
    """About `events` envelopes of users registering, changing and leaving, interleaved.

    Each user's events keep their order and sequences; users overlap in time, so one
    user's events spread over many pages. With `pending_every`, every n-th registration
    is pending (the registration saga), and every third of those has a reserved name.
    """
    rng = random.Random(seed)
    start = (now or datetime.now(UTC)) - timedelta(hours=1)
    live: list[list[Any]] = []  # [user_id, username, sequence, deleted]
    out: list[Envelope] = []
    registered = 0
    while len(out) < events:
        moment = start + timedelta(milliseconds=len(out))
        if not live or rng.random() < 0.45:
            user_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            name = f"user{user_id.hex[:12]}"
            registered += 1
            pending = pending_every and registered % pending_every == 0
            display = "Staff" if pending and registered % (3 * pending_every) == 0 else None
            event: Event = UserRegistered(
                user_id=user_id,
                username=name,
                email=f"{name}@example.com",
                role="user",
                registered_at=moment,
                display_name=display or rng.choice([None, f"Name {name[-4:]}"]),
                status="pending" if pending else "active",
            )
            live.append([user_id, name, 1, False])
            out.append(_wrap(event, 1, moment, rng))
            continue
        index = rng.randrange(len(live))
        user = live[index]
        user[2] += 1
        event = _change(rng, user, moment)
        out.append(_wrap(event, user[2], moment, rng))
        if isinstance(event, UserDeleted):
            live[index] = live[-1]
            live.pop()
    return out


def _change(rng: random.Random, user: list[Any], moment: datetime) -> Event:
    user_id, name = user[0], user[1]
    roll = rng.random()
    if roll < 0.35:
        fields: dict[str, Any] = rng.choice(
            [
                {"email": f"{name}.{rng.randrange(1000)}@example.org"},
                {"display_name": f"Shown {rng.randrange(1000)}"},
                {"display_name": None},
                {"email": None},  # present as null: the email did not change
                {"email": f"{name}@example.net", "display_name": "Both"},
            ]
        )
        return UserUpdated(user_id=user_id, updated_at=moment, **fields)
    if roll < 0.65:
        reason = rng.choice(["change", "reset", "admin"])
        return PasswordChanged(user_id=user_id, changed_at=moment, reason=reason)
    if roll < 0.85:
        old, new = ("user", "admin") if rng.random() < 0.5 else ("admin", "user")
        return UserRoleChanged(user_id=user_id, old_role=old, new_role=new, changed_at=moment)
    return UserDeleted(user_id=user_id, username=name, deleted_at=moment)


def _wrap(event: Event, sequence: int, moment: datetime, rng: random.Random) -> Envelope:
    event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    return to_envelope(event, sequence=sequence, source=SOURCE, event_id=event_id, time=moment)


def outbox_record(envelope: Envelope) -> tuple[Any, ...]:
    """The `auth.outbox` row of an envelope, as COPY takes it (the id is drawn by the table)."""
    return (
        envelope.id,
        envelope.user_id,
        envelope.sequence,
        envelope.type,
        envelope.model_dump_json(),
        envelope.time,
    )


async def seed_outbox(database_url: str, envelopes: Iterable[Envelope]) -> None:
    """COPY the envelopes into `auth.outbox` in order (one transaction)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.copy_records_to_table(
            "outbox",
            schema_name="auth",
            columns=["event_id", "subject", "sequence", "type", "payload", "occurred_at"],
            records=[outbox_record(e) for e in envelopes],
        )
    finally:
        await conn.close()


async def table_rows(
    conn: AsyncConnection, schema: str, table: str, order_by: str, *, leave_out: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Every row of a table as dicts, in `order_by` order, without the columns left out."""
    result = await conn.execute(text(f'SELECT * FROM "{schema}"."{table}" ORDER BY {order_by}'))
    return [{k: v for k, v in row._mapping.items() if k not in leave_out} for row in result.all()]


async def positions(conn: AsyncConnection, schema: str) -> dict[uuid.UUID, int]:
    """The tracking records of the projection whose tables are in `schema`."""
    rows = await conn.execute(text(f'SELECT subject, sequence FROM "{schema}".tracking'))
    return {subject: sequence for subject, sequence in rows.all()}


def expected_profiles(
    envelopes: Iterable[Envelope],
) -> tuple[dict[uuid.UUID, dict[str, Any]], dict[uuid.UUID, int]]:
    """The profile rows and tracking records a history gives, folded in memory (an oracle).

    Each user's events once, in order: a registration makes the row (pending ones are not
    expected here), an update sets the fields it carries, a deletion removes the row.
    """
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    tracked: dict[uuid.UUID, int] = {}
    for envelope in envelopes:
        user, data = envelope.user_id, envelope.data
        if envelope.sequence <= tracked.get(user, 0):
            continue
        tracked[user] = envelope.sequence
        if envelope.type == "UserRegistered":
            assert data.get("status", "active") != "pending"
            moment = datetime.fromisoformat(data["registered_at"])
            rows.setdefault(
                user,
                {
                    "user_id": user,
                    "username": data["username"],
                    "email": data["email"],
                    "registered_at": moment,
                    "display_name": data.get("display_name"),
                    "updated_at": moment,
                },
            )
        elif envelope.type == "UserUpdated" and user in rows:
            changes = {k: data[k] for k in ("display_name",) if k in data}
            if data.get("email") is not None:
                changes["email"] = data["email"]
            if changes:
                rows[user].update(changes, updated_at=datetime.fromisoformat(data["updated_at"]))
        elif envelope.type == "UserDeleted":
            rows.pop(user, None)
    return rows, tracked
