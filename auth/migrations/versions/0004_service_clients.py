"""Service clients: the credentials of the services that read the event feed (GET /events).

A client is a name (for operators), a public client id and a secret stored only as its
SHA-256 digest: the secret is a 256-bit random value, so a digest makes a stolen table useless
and a lookup stays one index probe (as with refresh tokens in 0003). Revoking keeps the row
(`revoked_at`), so `userbus service list` still shows who had access; a name is unique among
the clients that are not revoked, so a revoked name can be issued again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE auth.service_clients (
            id uuid PRIMARY KEY,
            name text NOT NULL,
            client_id text NOT NULL UNIQUE,
            secret_hash bytea NOT NULL,
            scope text NOT NULL,
            created_at timestamptz NOT NULL,
            revoked_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX service_clients_active_name ON auth.service_clients (lower(name)) "
        "WHERE revoked_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE auth.service_clients")
