"""Users and the transactional outbox (which is also the event log).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS auth")
    op.execute(
        """
        CREATE TABLE auth.users (
            id uuid PRIMARY KEY,
            username text NOT NULL,
            email text NOT NULL,
            password_hash text NOT NULL,
            role text NOT NULL CHECK (role IN ('user', 'admin')),
            status text NOT NULL CHECK (status IN ('active', 'disabled', 'pending')),
            display_name text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL CHECK (version >= 1)
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX users_username_lower_key ON auth.users (lower(username))")
    op.execute("CREATE UNIQUE INDEX users_email_lower_key ON auth.users (lower(email))")
    op.execute(
        """
        CREATE TABLE auth.outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE,
            subject uuid NOT NULL,
            sequence integer NOT NULL CHECK (sequence >= 1),
            type text NOT NULL,
            payload jsonb NOT NULL,
            occurred_at timestamptz NOT NULL,
            published_at timestamptz,
            -- one event per version of a user: a lost update can never reach the log
            UNIQUE (subject, sequence)
        )
        """
    )
    # The relay reads only unpublished rows, in id order, and checks per subject that no
    # earlier event is still unpublished: both lookups stay small as the log grows.
    op.execute("CREATE INDEX outbox_pending ON auth.outbox (id) WHERE published_at IS NULL")
    op.execute(
        "CREATE INDEX outbox_pending_subject ON auth.outbox (subject, id) "
        "WHERE published_at IS NULL"
    )
    # NOTIFY is delivered on commit and dropped on rollback: the relay wakes exactly when
    # there is something committed to publish.
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


def downgrade() -> None:
    op.execute("DROP TABLE auth.outbox")
    op.execute("DROP FUNCTION auth.notify_outbox()")
    op.execute("DROP TABLE auth.users")
