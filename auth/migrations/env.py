"""Alembic environment: runs on the connection `auth.migrations.upgrade` hands over."""

from alembic import context

from auth.adapters.orm import SCHEMA, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `userbus migrate` (auth.migrations.upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table_schema=SCHEMA,
    include_schemas=True,
)
with context.begin_transaction():
    context.run_migrations()
