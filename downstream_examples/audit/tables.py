"""The audit service's own table, in its own schema: one row per event, never changed.

Append-only by design: the projection only INSERTs (ON CONFLICT DO NOTHING), and a trigger
(created by `AuditProjection.create_tables`) refuses UPDATE and DELETE whoever asks, with one
exception: the erasure of a deleted user. On UserDeleted the projection blanks the PII of
that user's rows (`redacted()`: username, email and display name replaced as in
events/erasure.py); the trigger lets an UPDATE through only when the row's user has a
UserDeleted recorded and the new row is the old one with exactly that redaction. The log
keeps the fact of every event (id, type, sequence, times) and loses only who it was. Give
the audit service's database roles no more than that needs: the read API SELECT on
`audit.events`; a writer INSERT and SELECT on it (never UPDATE, DELETE or TRUNCATE), plus
SELECT, INSERT and UPDATE on `audit.tracking`. Keep DDL with the owner role that creates
the schema and runs `userbus replay audit` (the toolkit's setup runs CREATE SCHEMA, so as
it stands the consumer process uses that role too, and the trigger is what guards the
rows). A replay changes no row either: it builds a new log in a shadow schema and swaps
it in whole (consumers/replay/), the trigger with it.
"""

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, Table, Text, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB

from events.erasure import ERASED_DOMAIN, ERASED_PREFIX

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

# A row's data with a deleted user's PII replaced, as events.erasure.redact_data does it.
REDACTED_FUNCTION = f"""
CREATE OR REPLACE FUNCTION "{SCHEMA}".redacted(data jsonb, user_id uuid) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT data
        || CASE WHEN jsonb_typeof(data -> 'username') = 'string' THEN jsonb_build_object(
               'username', '{ERASED_PREFIX}' || replace(user_id::text, '-', ''))
           ELSE '{{}}'::jsonb END
        || CASE WHEN jsonb_typeof(data -> 'email') = 'string' THEN jsonb_build_object(
               'email', '{ERASED_PREFIX}' || replace(user_id::text, '-', '') || '@{ERASED_DOMAIN}')
           ELSE '{{}}'::jsonb END
        || CASE WHEN data ? 'display_name' THEN '{{"display_name": null}}'::jsonb
           ELSE '{{}}'::jsonb END
$$
"""

# Raises on any UPDATE or DELETE of a row but a deleted user's redaction. The table is the
# trigger's own (TG_TABLE_*), wherever it is (a replay's shadow too).
REFUSE_CHANGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION "{SCHEMA}".refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    deleted boolean;
BEGIN
    IF TG_OP = 'UPDATE'
       AND to_jsonb(NEW) - 'data' = to_jsonb(OLD) - 'data'
       AND NEW.data = "{SCHEMA}".redacted(OLD.data, OLD.user_id)
    THEN
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM %I.%I WHERE user_id = $1 AND type = %L)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME, 'UserDeleted'
        ) INTO deleted USING OLD.user_id;
        IF deleted THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit.events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def refuse_change_trigger(schema: str) -> str:
    """The trigger on the events table in `schema` (a replay's shadow too).

    The functions stay in the live schema, so the trigger keeps working once a replay has
    moved the table there, and dropping the shadow afterwards cannot take them along.
    """
    return f"""
CREATE OR REPLACE TRIGGER events_append_only
BEFORE UPDATE OR DELETE ON "{schema}".events
FOR EACH ROW EXECUTE FUNCTION "{SCHEMA}".refuse_change()
"""
