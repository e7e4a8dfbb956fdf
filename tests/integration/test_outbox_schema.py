"""The migrated auth outbox is exactly what producers.outbox creates, from either history."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from auth.migrations import alembic_config, upgrade
from infra.settings import sqlalchemy_url
from producers.outbox import notify_channel, outbox_ddl, outbox_tables
from tests.conftest import ADMIN_BASE, ADMIN_URL

pytestmark = pytest.mark.integration

OTHER = "outbox_shape_check"

# The outbox as migration 0001 made it before it took its outbox from producers.outbox
# (`git show main:auth/migrations/versions/0001_users_and_outbox.py`), verbatim.
OLD_0001 = [
    "CREATE SCHEMA IF NOT EXISTS auth",
    """
        CREATE TABLE auth.users (
            id uuid PRIMARY KEY,
            username text NOT NULL,
            email text NOT NULL,
            password_hash text NOT NULL,
            role text NOT NULL CHECK (role IN ('user', 'admin')),
            status text NOT NULL CHECK (status IN ('active', 'disabled', 'pending')),
            display_name text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL CHECK (version >= 1)
        )
        """,
    "CREATE UNIQUE INDEX users_username_lower_key ON auth.users (lower(username))",
    "CREATE UNIQUE INDEX users_email_lower_key ON auth.users (lower(email))",
    """
        CREATE TABLE auth.outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE,
            subject uuid NOT NULL,
            sequence integer NOT NULL CHECK (sequence >= 1),
            type text NOT NULL,
            payload jsonb NOT NULL,
            occurred_at timestamptz NOT NULL,
            published_at timestamptz,
            -- one event per version of a user: a lost update can never reach the log
            UNIQUE (subject, sequence)
        )
        """,
    "CREATE INDEX outbox_pending ON auth.outbox (id) WHERE published_at IS NULL",
    "CREATE INDEX outbox_pending_subject ON auth.outbox (subject, id) WHERE published_at IS NULL",
    """
        CREATE FUNCTION auth.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('userbus_outbox', '');
            RETURN NULL;
        END $$
        """,
    "CREATE TRIGGER outbox_notify AFTER INSERT ON auth.outbox "
    "FOR EACH STATEMENT EXECUTE FUNCTION auth.notify_outbox()",
]

_COLUMNS = """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = $1 AND c.relname LIKE 'outbox%' AND c.relkind = 'r'
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY c.relname, a.attnum
"""
_RELATIONS = """
    SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname LIKE 'outbox%' ORDER BY c.relname
"""
_CONSTRAINTS = """
    SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname LIKE 'outbox%'
    ORDER BY c.relname, k.conname
"""
_INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname"
_SEQUENCES = """
    SELECT c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmin,
           s.seqmax, s.seqcache, s.seqcycle
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 ORDER BY c.relname
"""
_TRIGGERS = """
    SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
    FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND NOT t.tgisinternal
    ORDER BY c.relname, t.tgname
"""
_FUNCTIONS = """
    SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prorettype::regtype::text,
           l.lanname, p.prosrc
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_language l ON l.oid = p.prolang
    WHERE n.nspname = $1
    ORDER BY p.proname
"""


async def outbox_shape(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every outbox object of `schema`, its schema name and NOTIFY channel made neutral."""

    def neutral(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.replace(notify_channel(schema), "<channel>").replace(f"{schema}.", "<schema>.")

    queries = {
        "columns": _COLUMNS,
        "relations": _RELATIONS,
        "constraints": _CONSTRAINTS,
        "indexes": _INDEXES,
        "sequences": _SEQUENCES,
        "triggers": _TRIGGERS,
        "functions": _FUNCTIONS,
    }
    shape = {}
    for name, query in queries.items():
        rows = await conn.fetch(query, schema)
        shape[name] = [tuple(neutral(value) for value in row.values()) for row in rows]
    # The auth schema also holds users, sessions and tokens: keep only the outbox's.
    shape["indexes"] = [row for row in shape["indexes"] if "<schema>.outbox" in row[1]]
    shape["sequences"] = [row for row in shape["sequences"] if row[0].startswith("outbox")]
    shape["triggers"] = [row for row in shape["triggers"] if row[0].startswith("outbox")]
    # ...and functions of its own (the deletion trigger's that feeds auth.erasures).
    shape["functions"] = [row for row in shape["functions"] if "outbox" in row[0]]
    return shape


async def module_shape(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """The shape `outbox_ddl` creates, in a schema of its own."""
    for statement in outbox_ddl(OTHER):
        await conn.execute(statement)
    return await outbox_shape(conn, OTHER)


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    """A database of this test alone with nothing in it."""
    name = f"userbus_test_outbox_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{ADMIN_BASE}/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_a_migrated_auth_outbox_is_what_the_module_creates(
    isolated_database_url: str,
) -> None:
    conn = await asyncpg.connect(isolated_database_url)
    try:
        migrated = await outbox_shape(conn, "auth")
        created = await module_shape(conn)
    finally:
        await conn.close()

    assert migrated == created
    # Not vacuous: the comparison saw every kind of object.
    assert {kind for kind, rows in created.items() if not rows} == set()
    assert {row[2] for row in created["constraints"]} == {"p", "u", "c", "f"}
    assert created["functions"][0][:4] == ("enqueue_outbox", "", "trigger", "plpgsql")
    assert "pg_notify('<channel>'" in created["functions"][0][4]


async def test_the_sqlalchemy_tables_declare_the_migrated_columns(
    isolated_database_url: str,
) -> None:
    conn = await asyncpg.connect(isolated_database_url)
    try:
        migrated = await outbox_shape(conn, "auth")
    finally:
        await conn.close()

    dialect = PGDialect_asyncpg()
    declared = [
        (table.name, column.name, column.type.compile(dialect=dialect).lower(), not column.nullable)
        for table in outbox_tables(MetaData(schema="auth"))
        for column in table.columns
    ]
    assert declared == [row[:4] for row in migrated["columns"]]


async def test_an_old_shaped_outbox_is_converted_and_keeps_its_unpublished_events(
    empty_database_url: str,
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        for statement in OLD_0001:
            await conn.execute(statement)
        insert = (
            "INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at,"
            " published_at) VALUES ($1, $2, 1, 'UserRegistered', '{}', now(), $3) RETURNING id"
        )
        published = await conn.fetchval(
            insert, uuid.uuid4(), uuid.uuid4(), datetime(2026, 1, 1, tzinfo=UTC)
        )
        unpublished_subject = uuid.uuid4()
        unpublished = await conn.fetchval(insert, uuid.uuid4(), unpublished_subject, None)
    finally:
        await conn.close()
    await stamp(empty_database_url, "0001")

    await upgrade(empty_database_url)

    conn = await asyncpg.connect(empty_database_url)
    try:
        converted = await outbox_shape(conn, "auth")
        queued = [tuple(row) for row in await conn.fetch("SELECT * FROM auth.outbox_pending")]
        kept = await conn.fetchval("SELECT count(*) FROM auth.outbox")
        created = await module_shape(conn)
    finally:
        await conn.close()
    assert converted == created
    assert queued == [(unpublished, unpublished_subject)]
    assert published != unpublished
    assert kept == 2


async def stamp(database_url: str, revision: str) -> None:
    """Record `revision` as applied without running it (the old 0001 had run)."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.stamp(alembic_config(sync), revision))
    finally:
        await engine.dispose()
