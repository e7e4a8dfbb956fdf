"""Email verification: a flag (and when) on each user, and single-use verification tokens.

Accounts from before this revision start unverified: nobody proved their address, so
turning on USERBUS_REQUIRE_VERIFIED_EMAIL makes their owners verify it first (through
`POST /auth/verify-email/request` with their address). A token is stored only as its
SHA-256 digest, like the reset tokens (0003), with the address it was mailed to: after an
email change, the tokens mailed to the old address no longer match and verify nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE auth.users ADD COLUMN email_verified boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE auth.users ADD COLUMN email_verified_at timestamptz")
    op.execute(
        """
        CREATE TABLE auth.email_verifications (
            token_hash bytea PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            email text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX email_verifications_user ON auth.email_verifications (user_id)")


def downgrade() -> None:
    op.execute("DROP TABLE auth.email_verifications")
    op.execute("ALTER TABLE auth.users DROP COLUMN email_verified_at")
    op.execute("ALTER TABLE auth.users DROP COLUMN email_verified")
