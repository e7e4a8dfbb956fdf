"""A narrow queue of unpublished outbox ids; the outbox itself becomes append-only.

Marking rows published in the outbox rewrote every row and its index entries (the flag sat
in the partial indexes' conditions, which rules out PostgreSQL's in-place HOT updates): it
cost the relay as much as publishing. Now the insert trigger enqueues each new event's id
in the same transaction, and the relay deletes ids from the queue once the broker has them.

Only a database that 0001 migrated before 0001 took its outbox from producers.outbox still
has the old shape (the `published_at` column, partial indexes, a NOTIFY-only trigger): this
revision converts that one, queueing its unpublished events. On any other database the
outbox already is what `outbox_ddl` makes, and this revision does nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from producers.outbox import outbox_ddl

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def upgrade() -> None:
    if not _has_old_shape():
        return
    # The partial indexes on the flag go first: the queue table takes over their names.
    op.execute(f"DROP INDEX {SCHEMA}.outbox_pending, {SCHEMA}.outbox_pending_subject")
    op.execute(f"DROP TRIGGER outbox_notify ON {SCHEMA}.outbox")
    op.execute(f"DROP FUNCTION {SCHEMA}.notify_outbox()")
    # The outbox table exists and is kept; the queue, its index and the trigger are made.
    for statement in outbox_ddl(SCHEMA):
        op.execute(statement)
    op.execute(
        f"INSERT INTO {SCHEMA}.outbox_pending (id, subject) "
        f"SELECT id, subject FROM {SCHEMA}.outbox WHERE published_at IS NULL"
    )
    op.execute(f"ALTER TABLE {SCHEMA}.outbox DROP COLUMN published_at")


def downgrade() -> None:
    """Nothing to undo: 0001 itself now makes the queue-shaped outbox.

    The old shape is not rebuilt: no code reads it any more, and 0001's downgrade drops the
    outbox whichever shape it has.
    """


def _has_old_shape() -> bool:
    found = op.get_bind().execute(
        text(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = 'outbox' "
            "AND column_name = 'published_at'"
        ),
        {"schema": SCHEMA},
    )
    return found.first() is not None
