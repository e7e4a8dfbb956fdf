"""The directory's own tables, in its own schema: members, and the users known to be deleted."""

from sqlalchemy import CheckConstraint, Column, DateTime, MetaData, Table, Text, Uuid

SCHEMA = "directory"
metadata = MetaData(schema=SCHEMA)

members = Table(
    "members",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("username", Text, nullable=False),
    Column("role", Text, nullable=False),
    # When the directory first heard of the user (token seen, or event time); never moves.
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    # 'token': known only from a verified token so far; 'event': confirmed by UserRegistered.
    Column("source", Text, nullable=False),
    CheckConstraint("source IN ('token', 'event')", name="members_source"),
)

# Tombstones: a deleted user's tokens stay valid until they expire (15 minutes by default),
# and must not bring the member back. User ids are never reused, so a tombstone older than
# the longest token lifetime guards nothing any more: `userbus prune directory` deletes it
# (tombstones.py).
deleted_users = Table(
    "deleted_users",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False),
)
