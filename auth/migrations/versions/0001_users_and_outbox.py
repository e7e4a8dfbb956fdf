"""Users and the transactional outbox (which is also the event log).

The outbox comes from `producers.outbox.outbox_ddl`, its one owner: a fresh database gets
the outbox of today's code here, and later migrations of the outbox are written to leave
such a database as it is (see producers/outbox.py). Databases migrated before this revision
called it had an older outbox (a `published_at` flag); 0002 converts those.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

from producers.outbox import drop_outbox_ddl, outbox_ddl

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.execute(
        f"""
        CREATE TABLE {SCHEMA}.users (
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
    op.execute(f"CREATE UNIQUE INDEX users_username_lower_key ON {SCHEMA}.users (lower(username))")
    op.execute(f"CREATE UNIQUE INDEX users_email_lower_key ON {SCHEMA}.users (lower(email))")
    for statement in outbox_ddl(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_outbox_ddl(SCHEMA):
        op.execute(statement)
    # Left only by the old outbox, on a database 0002 never converted.
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.notify_outbox()")
    op.execute(f"DROP TABLE {SCHEMA}.users")
