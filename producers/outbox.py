"""A transactional outbox in any schema: the tables, trigger and NOTIFY the relay works from.

The auth service's outbox (`auth.outbox`, made by its Alembic migrations) has exactly this
shape. Another service that publishes events (the profile service's answers in the
registration saga) creates the same in its own schema with `outbox_ddl`, writes rows into
`outbox_table(schema)` in its own transactions, and runs a relay with that schema
(`RelaySettings.outbox_schema`).
"""

import re
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, Integer, MetaData, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

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
        f"""
        CREATE TABLE IF NOT EXISTS {s}.outbox_pending (
            id bigint PRIMARY KEY REFERENCES {s}.outbox (id),
            subject uuid NOT NULL
        )
        """,
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


def outbox_columns() -> list[Column[Any]]:
    """The columns of an outbox table (new objects on each call: a column has one table)."""
    return [
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("subject", Uuid, nullable=False),
        Column("sequence", Integer, nullable=False),
        Column("type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
    ]


def outbox_table(schema: str) -> Table:
    """The outbox of `schema` as a SQLAlchemy table, for inserting events (own MetaData)."""
    return Table("outbox", MetaData(schema=check_schema(schema)), *outbox_columns())
