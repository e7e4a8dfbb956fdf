"""Erasing deleted users: their events in the log redacted, then the broker's copies.

A deleted user has a row in `auth.erasures` (a trigger adds it in the deleting transaction,
migration 0006). Once the deletion is older than the grace period:
1. **The log.** Every event of the user in `auth.outbox` gets its PII redacted
   (events/erasure.py: username, email, display name), ids, types, sequences and times kept;
   `erased_at` records it, in the same transaction. This UPDATE is the only change the
   outbox ever gets (producers/outbox.py). A transaction handles a batch of users and takes
   tens of milliseconds: the event log's commit-safe head waits for it as for any writer.
2. **The broker.** For users with no event still queued for the relay (else the relay
   could publish a copy it read before the redaction after the stream was cleaned), the
   broker replaces their entries by the redacted events (`Broker.erase`: Redis XDELs and
   appends; Kafka leaves its records to the topic's retention); `broker_erased_at` records it.

Why a grace period: a consumer that lags behind by less than it still gets the events as they
were. After it, it gets the redacted events; a projection that applies a deletion ends with
no trace of the user either way.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg

from consumers.replay.stamp import stamp
from events.erasure import redact_envelope
from infra.brokers import Broker
from infra.erasure import ErasedEntries

# The broker's clock (a Redis entry id) and the auth service's (an event's time) may disagree;
# the stream is read from this long before the users' first event.
CLOCK_MARGIN = timedelta(hours=1)

_DUE_FOR_LOG = """
    SELECT user_id FROM auth.erasures
    WHERE erased_at IS NULL AND deleted_at <= now() - make_interval(secs => $1)
    ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""
_EVENTS_OF = """
    SELECT id, subject, payload::text AS payload, occurred_at FROM auth.outbox
    WHERE subject = ANY($1::uuid[]) ORDER BY subject, sequence
"""
_REDACT = """
    UPDATE auth.outbox o SET payload = v.payload::jsonb, contract = v.contract
    FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, payload, contract)
    WHERE o.id = v.id
"""
_MARK_ERASED = """
    UPDATE auth.erasures e SET erased_at = now(), redacted_events = v.n
    FROM unnest($1::uuid[], $2::integer[]) AS v(user_id, n) WHERE e.user_id = v.user_id
"""
_DUE_FOR_BROKER = """
    SELECT e.user_id FROM auth.erasures e
    WHERE e.erased_at IS NOT NULL AND e.broker_erased_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM auth.outbox_pending p WHERE p.subject = e.user_id)
    ORDER BY e.erased_at LIMIT $1 FOR UPDATE OF e SKIP LOCKED
"""
_MARK_BROKER_ERASED = (
    "UPDATE auth.erasures SET broker_erased_at = now() WHERE user_id = ANY($1::uuid[])"
)


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure run did, in the log and on the broker."""

    users: int = 0
    events: int = 0
    broker_users: int = 0
    broker: ErasedEntries = field(default_factory=ErasedEntries)


async def erase_deleted_users(
    pool: asyncpg.Pool,
    broker: Broker,
    stream: str,
    *,
    grace: timedelta,
    batch_users: int,
) -> Erased:
    """Redact the due users' events in the log, then replace their copies on the broker."""
    users, events = await redact_log(pool, grace=grace, batch_users=batch_users)
    broker_users, entries = await erase_from_broker(pool, broker, stream, batch_users=batch_users)
    return Erased(users, events, broker_users, entries)


async def redact_log(pool: asyncpg.Pool, *, grace: timedelta, batch_users: int) -> tuple[int, int]:
    """Redact the events of users deleted longer than `grace` ago; (users, events changed)."""
    users = events = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            due = [
                row[0] for row in await conn.fetch(_DUE_FOR_LOG, grace.total_seconds(), batch_users)
            ]
            if not due:
                return users, events
            changed: list[tuple[int, str]] = []
            per_user: Counter[UUID] = Counter()
            for row in await conn.fetch(_EVENTS_OF, due):
                envelope: dict[str, Any] = json.loads(row["payload"])
                redacted = redact_envelope(envelope)
                if redacted != envelope:
                    changed.append((row["id"], json.dumps(redacted)))
                    per_user[row["subject"]] += 1
            if changed:
                # The redacted payload is stamped as the writer stamps a new one.
                payloads = [p for _, p in changed]
                await conn.execute(
                    _REDACT, [i for i, _ in changed], payloads, [stamp(p) for p in payloads]
                )
            await conn.execute(_MARK_ERASED, due, [per_user[user_id] for user_id in due])
        users, events = users + len(due), events + len(changed)
        if len(due) < batch_users:
            return users, events


async def erase_from_broker(
    pool: asyncpg.Pool, broker: Broker, stream: str, *, batch_users: int
) -> tuple[int, ErasedEntries]:
    """Replace the broker's copies of redacted users' events; (users, what the broker did)."""
    users, total = 0, ErasedEntries()
    while True:
        async with pool.acquire() as conn, conn.transaction():
            due = [row[0] for row in await conn.fetch(_DUE_FOR_BROKER, batch_users)]
            if not due:
                return users, total
            rows = await conn.fetch(_EVENTS_OF, due)
            histories: dict[UUID, list[str]] = {}
            for row in rows:
                histories.setdefault(row["subject"], []).append(row["payload"])
            if histories:
                since = min(row["occurred_at"] for row in rows) - CLOCK_MARGIN
                total = _plus(total, await broker.erase(stream, histories, since=since))
            # Held until the broker has answered: a failure leaves the users due.
            await conn.execute(_MARK_BROKER_ERASED, due)
        users += len(due)
        if len(due) < batch_users:
            return users, total


def _plus(a: ErasedEntries, b: ErasedEntries) -> ErasedEntries:
    return ErasedEntries(
        scanned=a.scanned + b.scanned,
        removed=a.removed + b.removed,
        appended=a.appended + b.appended,
        dead_letters_removed=a.dead_letters_removed + b.dead_letters_removed,
        rewritable=a.rewritable and b.rewritable,
    )
