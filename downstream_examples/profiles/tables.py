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
    and runs at every start (see ProfileProjection.create_tables). A column is added only
    when it is missing: ALTER TABLE takes ACCESS EXCLUSIVE, even with IF NOT EXISTS, and
    every reader would queue behind it. A real service would keep these as Alembic
    migrations instead.
    """
    return [
        *(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = 'profiles' "
            f"AND column_name = '{column}') THEN "
            f'ALTER TABLE "{schema}".profiles ADD COLUMN {column} {kind}; END IF; END $$'
            for column, kind in (("display_name", "text"), ("updated_at", "timestamptz"))
        ),
        f"DO $$ BEGIN IF to_regclass('\"{schema}\".profiles_username_lower') IS NULL THEN "
        f'CREATE INDEX profiles_username_lower ON "{schema}".profiles (lower(username)); '
        "END IF; END $$",
    ]
