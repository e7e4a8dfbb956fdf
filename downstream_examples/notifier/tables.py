"""The notifier's own tables: who to write to, and the mails owed (its outbox)."""

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)

SCHEMA = "notifier"
metadata = MetaData(schema=SCHEMA)

# A view kept from UserRegistered, UserUpdated and UserDeleted: PasswordChanged carries no
# address, so the notice is addressed from here.
recipients = Table(
    "recipients",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("email", Text, nullable=False),
    Column("username", Text, nullable=False),
)

# The consumer-side outbox: one row per event that owes a mail, written in the projection's
# transaction; the sender delivers it later. The event id as primary key means that an
# event applied again (a replay) owes nothing more.
outgoing = Table(
    "outgoing",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False, index=True),
    Column("kind", Text, nullable=False),
    Column("to_address", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # pending -> sent, or -> failed after the sender's last attempt.
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Column("last_error", Text),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="outgoing_status"),
    # The sender's queue: only what is still to be sent, in due order.
    Index("outgoing_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
)
