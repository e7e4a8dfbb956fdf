"""The notifier's own tables: who to write to, and the mails owed (its outbox)."""

from functools import cache

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


@cache
def owed_mail(schema: str) -> Table:
    """Mails owed by the events a replay applies, held in its shadow schema until the swap.

    A replay must not queue mail for the events the live notifier already applied (their
    mails are queued or sent), but it owes the mails of the events the live one had not
    applied yet when the swap came, because after the swap nobody else will. So the shadow
    notes every mail here, and the swap moves into `outgoing` only those of events beyond
    the live notifier's position (NotifierProjection.carry_over).
    """
    return Table(
        "owed_mail",
        MetaData(schema=schema),
        Column("event_id", Uuid, primary_key=True),
        Column("user_id", Uuid, nullable=False, index=True),
        Column("sequence", Integer, nullable=False),
        Column("kind", Text, nullable=False),
        Column("to_address", Text, nullable=False),
        Column("subject", Text, nullable=False),
        Column("body", Text, nullable=False),
    )
