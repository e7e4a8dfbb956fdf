"""The profile service's own tables, in its own schema (never the auth tables)."""

from sqlalchemy import Column, DateTime, Index, MetaData, Table, Text, Uuid, func

SCHEMA = "profiles"
metadata = MetaData(schema=SCHEMA)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("username", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("display_name", Text),
    # When the profile last changed (its registration, then each update); null only on
    # rows written before this column existed.
    Column("updated_at", DateTime(timezone=True)),
)

# GET /profiles?username= matches case-insensitively, as the auth service compares usernames.
Index("profiles_username_lower", func.lower(profiles.c.username))


def schema_upgrades(schema: str) -> list[str]:
    """What metadata.create_all cannot do, for the profile table in `schema`.

    create_all creates missing tables but never alters existing ones, so a database made by
    an earlier version of this example lacks what came later. Each statement is idempotent
    and runs at every start (see ProfileProjection.create_tables). A real service would
    keep these as Alembic migrations instead.
    """
    return [
        f'ALTER TABLE "{schema}".profiles ADD COLUMN IF NOT EXISTS display_name text',
        f'ALTER TABLE "{schema}".profiles ADD COLUMN IF NOT EXISTS updated_at timestamptz',
        f'CREATE INDEX IF NOT EXISTS profiles_username_lower ON "{schema}".profiles '
        "(lower(username))",
    ]
