"""A transactional outbox in any schema: the one owner of its DDL, its tables and its rows.

The auth service's outbox (`auth.outbox`, made by its Alembic migrations, which call
`outbox_ddl("auth")`) and any other service's (the profile service's answers in the
registration saga, `outbox_ddl("profiles")`) have exactly this shape. A service writes
`outbox_row(envelope)` rows into `outbox_tables(metadata)[0]` in its own transactions, and
runs a relay with its schema (`RelaySettings.outbox_schema`).

The outbox is append-only, with one exception: erasure. After a user is deleted and the
grace period has passed, `userbus prune` redacts the PII in `payload.data` of that user's
rows (auth/maintenance/erasure.py; ids, types, sequences and times stay) and stamps them
anew (`contract`, consumers/replay/stamp.py). No other UPDATE,
and no DELETE, is ever made to an outbox.

Changing the outbox: edit `outbox_ddl` here, and add a migration that brings an existing
database to the new shape. Migration 0001 calls this function, so a fresh database already
has the new shape before that migration runs: the migration must be idempotent against a
database created from the current DDL (detect the old shape, as 0002 does, or use
IF [NOT] EXISTS).
"""

import json
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

from events import Envelope

DEFAULT_SCHEMA = "auth"
SCHEMA_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


def check_schema(schema: str) -> str:
    """The schema name, if it is a plain lower-case PostgreSQL identifier (it goes into SQL)."""
    if not re.fullmatch(SCHEMA_PATTERN, schema):
        raise ValueError(f"an outbox schema is a lower-case identifier, not {schema!r}")
    return schema


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of the outbox in `schema` (auth's keeps its original name)."""
    return "userbus_outbox" if schema == DEFAULT_SCHEMA else f"userbus_outbox_{schema}"


def outbox_ddl(schema: str) -> list[str]:
    """Idempotent statements creating the outbox, its queue and the enqueue trigger."""
    s = check_schema(schema)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        # Also the event log: append-only (but erasure's redaction), so a projection can be
        # rebuilt from it.
        f"""
        CREATE TABLE IF NOT EXISTS {s}.outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE,
            subject uuid NOT NULL,
            sequence integer NOT NULL CHECK (sequence >= 1),
            type text NOT NULL,
            payload jsonb NOT NULL,
            occurred_at timestamptz NOT NULL,
            UNIQUE (subject, sequence)
        )
        """,
        *outbox_upgrades(s),
        # The ids the relay has still to publish: it deletes them once the broker has the
        # events, so the relay never updates the outbox itself (no rewritten rows and indexes).
        f"""
        CREATE TABLE IF NOT EXISTS {s}.outbox_pending (
            id bigint PRIMARY KEY REFERENCES {s}.outbox (id),
            subject uuid NOT NULL
        )
        """,
        # The relay checks per user that no earlier event is still queued behind another relay.
        f"CREATE INDEX IF NOT EXISTS outbox_pending_subject ON {s}.outbox_pending (subject, id)",
        # Enqueue and NOTIFY in the inserting transaction: both vanish if it rolls back.
        f"""
        CREATE OR REPLACE FUNCTION {s}.enqueue_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {s}.outbox_pending (id, subject) SELECT id, subject FROM new_rows;
            PERFORM pg_notify('{notify_channel(s)}', '');
            RETURN NULL;
        END $$
        """,
        f"""
        CREATE OR REPLACE TRIGGER outbox_enqueue AFTER INSERT ON {s}.outbox
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.enqueue_outbox()
        """,
    ]


def outbox_upgrades(schema: str) -> list[str]:
    """What CREATE TABLE IF NOT EXISTS cannot do to an older outbox: its later columns.

    `contract` (the stamp of the replay's checks, consumers/replay/stamp.py; null: not
    stamped) came after the first outbox. A column is added only when it is missing (ALTER
    TABLE would take ACCESS EXCLUSIVE even with IF NOT EXISTS). Part of `outbox_ddl`, and
    migration 0009 runs it on auth's.
    """
    s = check_schema(schema)
    return [
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM information_schema.columns "
        f"WHERE table_schema = '{s}' AND table_name = 'outbox' AND column_name = 'contract') "
        f"THEN ALTER TABLE {s}.outbox ADD COLUMN contract text; END IF; END $$"
    ]


def drop_outbox_ddl(schema: str) -> list[str]:
    """Statements dropping what `outbox_ddl` created, but the schema (events are lost)."""
    s = check_schema(schema)
    return [
        f"DROP TABLE IF EXISTS {s}.outbox_pending, {s}.outbox",
        f"DROP FUNCTION IF EXISTS {s}.enqueue_outbox()",
    ]


def outbox_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox and its queue, `(outbox, outbox_pending)`, as tables in `metadata`."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("subject", Uuid, nullable=False),
        Column("sequence", Integer, nullable=False),
        Column("type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("contract", Text),
    )
    pending = Table(
        "outbox_pending",
        metadata,
        Column("id", BigInteger, ForeignKey(outbox.c.id), primary_key=True),
        Column("subject", Uuid, nullable=False),
    )
    return outbox, pending


def outbox_table(schema: str) -> Table:
    """The outbox of `schema` as a SQLAlchemy table, for inserting events (own MetaData)."""
    outbox, _ = outbox_tables(MetaData(schema=check_schema(schema)))
    return outbox


def outbox_row(
    envelope: Envelope, stamper: Callable[[str], str | None] | None = None
) -> dict[str, Any]:
    """The outbox row carrying `envelope` (its subject and sequence are the user's).

    `stamper` (consumers/replay/stamp.py `stamp`, given by the services that write) stamps
    the row with the outcome of the replay's checks of its payload, run here once instead
    of at every replay; without it the row has no stamp and a replay checks it.
    """
    payload = envelope.model_dump(mode="json")
    return {
        "event_id": envelope.id,
        "subject": envelope.user_id,
        "sequence": envelope.sequence,
        "type": envelope.type,
        "payload": payload,
        "occurred_at": envelope.time,
        "contract": None if stamper is None else stamper(json.dumps(payload)),
    }
