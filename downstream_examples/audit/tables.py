"""The audit service's own table, in its own schema: one row per event, never changed.

Append-only by design: the projection only INSERTs (ON CONFLICT DO NOTHING), and a trigger
(created by `AuditProjection.create_tables`) refuses UPDATE and DELETE whoever asks. Give
the audit service's database roles no more than that needs: the read API SELECT on
`audit.events`; a writer INSERT and SELECT on it (never UPDATE, DELETE or TRUNCATE), plus
SELECT, INSERT and UPDATE on `audit.tracking`. Keep DDL with the owner role that creates
the schema and runs `userbus replay audit` (the toolkit's setup runs CREATE SCHEMA, so as
it stands the consumer process uses that role too, and the trigger is what guards the
rows). A replay never changes a row either: it builds a new table in a shadow schema and
swaps it in whole (consumers/replay/).
"""

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, Table, Text, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "audit"
metadata = MetaData(schema=SCHEMA)

audit_events = Table(
    "events",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("type", Text, nullable=False),
    # The envelope's `time`: when the change happened in the auth service.
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=False),
    # The envelope's data as it came over the wire (a sparse UserUpdated stays sparse).
    Column("data", JSONB, nullable=False),
    # When this service recorded it; a replay records the events again, so it moves then.
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Not unique: the applier already skips a repeated sequence, and should a producer ever
    # send two events with one sequence, an audit log records both rather than fail one.
    Index("events_user_sequence", "user_id", "sequence"),
)

# Raises on any UPDATE or DELETE of a row.
REFUSE_CHANGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION "{SCHEMA}".refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def refuse_change_trigger(schema: str) -> str:
    """The trigger on the events table in `schema` (a replay's shadow too).

    The function stays in the live schema, so the trigger keeps working once a replay has
    moved the table there, and dropping the shadow afterwards cannot take it along.
    """
    return f"""
CREATE OR REPLACE TRIGGER events_append_only
BEFORE UPDATE OR DELETE ON "{schema}".events
FOR EACH ROW EXECUTE FUNCTION "{SCHEMA}".refuse_change()
"""
