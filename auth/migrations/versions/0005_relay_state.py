"""The relay's record of each stream it publishes to, for finding broker data loss.

One row per stream or topic: the counters the broker showed at the relay's last check and how
often the stream was repaired (producers/loss.py owns the table's DDL; a relay creates it
itself for an outbox no migration manages).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from producers.loss import relay_state_ddl

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in relay_state_ddl("auth"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS auth.relay_state")
