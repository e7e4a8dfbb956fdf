"""The profile service's own tables, in its own schema (never the auth tables)."""

from sqlalchemy import Column, DateTime, MetaData, Table, Text, Uuid

SCHEMA = "profiles"
metadata = MetaData(schema=SCHEMA)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("username", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)
