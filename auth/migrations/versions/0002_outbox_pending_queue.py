"""A narrow queue of unpublished outbox ids; the outbox itself becomes append-only.

Marking rows published in the outbox rewrote every row and its index entries (the flag sat
in the partial indexes' conditions, which rules out PostgreSQL's in-place HOT updates): it
cost the relay as much as publishing. Now the insert trigger enqueues each new event's id
in the same transaction, and the relay deletes ids from the queue once the broker has them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The partial indexes on the flag go first: the queue table takes over their names.
    op.execute("DROP INDEX auth.outbox_pending, auth.outbox_pending_subject")
    op.execute(
        """
        CREATE TABLE auth.outbox_pending (
            id bigint PRIMARY KEY REFERENCES auth.outbox (id),
            subject uuid NOT NULL
        )
        """
    )
    # The relay checks per user that no earlier event is still queued behind another relay.
    op.execute("CREATE INDEX outbox_pending_subject ON auth.outbox_pending (subject, id)")
    op.execute(
        "INSERT INTO auth.outbox_pending (id, subject) "
        "SELECT id, subject FROM auth.outbox WHERE published_at IS NULL"
    )
    op.execute("ALTER TABLE auth.outbox DROP COLUMN published_at")
    op.execute("DROP TRIGGER outbox_notify ON auth.outbox")
    op.execute("DROP FUNCTION auth.notify_outbox()")
    # Enqueue and NOTIFY in the inserting transaction: both vanish if it rolls back, and the
    # notification is delivered only once it commits.
    op.execute(
        """
        CREATE FUNCTION auth.enqueue_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO auth.outbox_pending (id, subject) SELECT id, subject FROM new_rows;
            PERFORM pg_notify('userbus_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_enqueue AFTER INSERT ON auth.outbox "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION auth.enqueue_outbox()"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE auth.outbox ADD COLUMN published_at timestamptz")
    op.execute(
        "UPDATE auth.outbox SET published_at = now() "
        "WHERE id NOT IN (SELECT id FROM auth.outbox_pending)"
    )
    op.execute("DROP TRIGGER outbox_enqueue ON auth.outbox")
    op.execute("DROP FUNCTION auth.enqueue_outbox()")
    op.execute("DROP TABLE auth.outbox_pending")
    op.execute(
        """
        CREATE FUNCTION auth.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('userbus_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON auth.outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION auth.notify_outbox()"
    )
    op.execute("CREATE INDEX outbox_pending ON auth.outbox (id) WHERE published_at IS NULL")
    op.execute(
        "CREATE INDEX outbox_pending_subject ON auth.outbox (subject, id) "
        "WHERE published_at IS NULL"
    )
