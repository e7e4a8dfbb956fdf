"""The erasure record of deleted users, fed by the database, and an index for pruning.

`auth.erasures` has a row per deleted user: a trigger adds it when a row of `auth.users` is
deleted, whichever path deletes it (the API, the registration saga, an operator's SQL), in
the deleting transaction. `userbus prune` redacts the user's events in the log once
`deleted_at` is older than the grace period (`erased_at`), then replaces the broker's copies
(`broker_erased_at`). Deletions from before this revision are taken from the log's
UserDeleted events, so their users are erased too.

The refresh tokens' expiry gets an index: pruning deletes expired tokens in batches without
reading the whole table each time. Sessions get none: their expiry moves on every refresh,
and an index on it would make each of those updates rewrite index entries; the prune reads
the (smaller) sessions table instead.

Numbered 0006 after the revisions 0004 and 0005 of parallel work: it revises 0005 (the
relay's state), which revises 0004 (service clients).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE auth.erasures (
            user_id uuid PRIMARY KEY,
            deleted_at timestamptz NOT NULL,
            -- the user's events in auth.outbox redacted, and how many of them changed
            erased_at timestamptz,
            redacted_events integer,
            -- the broker's copies replaced (Redis) or left to the retention (Kafka)
            broker_erased_at timestamptz,
            CHECK (broker_erased_at IS NULL OR erased_at IS NOT NULL)
        )
        """
    )
    op.execute(
        "CREATE INDEX erasures_log_due ON auth.erasures (deleted_at) WHERE erased_at IS NULL"
    )
    op.execute(
        "CREATE INDEX erasures_broker_due ON auth.erasures (erased_at) "
        "WHERE erased_at IS NOT NULL AND broker_erased_at IS NULL"
    )
    op.execute(
        """
        CREATE FUNCTION auth.record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO auth.erasures (user_id, deleted_at) SELECT id, now() FROM old_rows
            ON CONFLICT (user_id) DO NOTHING;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER users_record_deletion AFTER DELETE ON auth.users
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION auth.record_deletion()
        """
    )
    op.execute(
        """
        INSERT INTO auth.erasures (user_id, deleted_at)
        SELECT subject, min(occurred_at) FROM auth.outbox WHERE type = 'UserDeleted'
        GROUP BY subject
        ON CONFLICT (user_id) DO NOTHING
        """
    )
    op.execute("CREATE INDEX refresh_tokens_expiry ON auth.refresh_tokens (expires_at)")


def downgrade() -> None:
    op.execute("DROP INDEX auth.refresh_tokens_expiry")
    op.execute("DROP TRIGGER users_record_deletion ON auth.users")
    op.execute("DROP FUNCTION auth.record_deletion()")
    op.execute("DROP TABLE auth.erasures")
