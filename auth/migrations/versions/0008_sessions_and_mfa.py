"""What a session list shows, and the TOTP second factor with its recovery codes.

Sessions get the client address and user agent of their login (updated at each refresh),
so that a user can tell their sessions apart. `last_used_at` already moves at login and at
each refresh: those are the moments a session is "used" without a write per request.

`auth.mfa_totp` holds one TOTP enrolment per user: the secret encrypted (Fernet, with
USERBUS_MFA_ENCRYPTION_KEY), `confirmed_at` null while the enrolment waits for its first
code, and the last time step a code was accepted for, so that no code works twice.
`auth.mfa_recovery_codes` holds the ten single-use codes as keyed digests (HMAC-SHA256).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE auth.sessions ADD COLUMN client_address text")
    op.execute("ALTER TABLE auth.sessions ADD COLUMN user_agent text")
    op.execute(
        """
        CREATE TABLE auth.mfa_totp (
            user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
            secret_ciphertext bytea NOT NULL,
            created_at timestamptz NOT NULL,
            -- null while pending: the user has not yet proven they hold the secret
            confirmed_at timestamptz,
            -- the time step (unix time / 30) of the last accepted code: a replay is refused
            last_used_step bigint
        )
        """
    )
    op.execute(
        """
        CREATE TABLE auth.mfa_recovery_codes (
            code_hash bytea PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX mfa_recovery_codes_user ON auth.mfa_recovery_codes (user_id)")


def downgrade() -> None:
    op.execute("DROP TABLE auth.mfa_recovery_codes")
    op.execute("DROP TABLE auth.mfa_totp")
    op.execute("ALTER TABLE auth.sessions DROP COLUMN user_agent")
    op.execute("ALTER TABLE auth.sessions DROP COLUMN client_address")
