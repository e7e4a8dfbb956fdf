"""The outbox's `contract` column: the stamp of the replay's checks, run once at writing.

The auth service stamps each new row with the outcome of the checks a replay makes of
its payload (`outbox_row(envelope, stamp)`, consumers/replay/stamp.py), so that the
in-database replay need not run them again for every event. Rows written before have
none and are checked in full, as before. A fresh database already has the column (0001
runs today's `outbox_ddl`): this revision then does nothing.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from producers.outbox import outbox_upgrades

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def upgrade() -> None:
    for statement in outbox_upgrades(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.outbox DROP COLUMN IF EXISTS contract")
