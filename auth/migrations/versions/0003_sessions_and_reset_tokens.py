"""Sessions with rotating refresh tokens, and single-use password reset tokens.

Tokens are stored only as SHA-256 digests: they are 256-bit random values, so a digest is
enough to make a stolen table useless, and a lookup stays one index probe.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A session is one refresh token family: a login, and every rotation that follows it.
    op.execute(
        """
        CREATE TABLE auth.sessions (
            id uuid PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            last_used_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            revoked_reason text
        )
        """
    )
    op.execute("CREATE INDEX sessions_user ON auth.sessions (user_id) WHERE revoked_at IS NULL")
    op.execute(
        """
        CREATE TABLE auth.refresh_tokens (
            token_hash bytea PRIMARY KEY,
            session_id uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            -- set when the token was exchanged; presenting it again means it was stolen
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX refresh_tokens_session ON auth.refresh_tokens (session_id)")
    op.execute(
        """
        CREATE TABLE auth.password_resets (
            token_hash bytea PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX password_resets_user ON auth.password_resets (user_id)")


def downgrade() -> None:
    op.execute("DROP TABLE auth.password_resets")
    op.execute("DROP TABLE auth.refresh_tokens")
    op.execute("DROP TABLE auth.sessions")
