"""Deleting what no longer serves: ended sessions, expired refresh tokens, spent reset and
verification tokens.

Each kind goes in batches, one DELETE statement (and transaction) per batch, that picks its
rows with `FOR UPDATE SKIP LOCKED`: a login or refresh in flight is never waited for (its
row is skipped and goes in a later run), and several prune processes split the work.

What stays, and why:
- A session and its refresh tokens stay until `prune_sessions_after_seconds` after the
  session ended (expired or revoked). A deleted session is as dead as a revoked one: an
  access token is accepted only while its session row exists, unrevoked and unexpired.
- A refresh token that was exchanged but has not expired stays while its session lives:
  presenting it again ends the session (theft detection), which needs the row. It goes once
  expired (plus `prune_refresh_tokens_after_seconds`); presenting it after that is refused
  as an unknown token, and no longer ends the session.
- A reset token goes `prune_reset_tokens_after_seconds` after it was used or expired, an
  email verification token `prune_verification_tokens_after_seconds` after.
"""

from dataclasses import dataclass

import asyncpg

from auth.maintenance.settings import PruneSettings

# Rows ended before the cutoff, a batch of them; $1: the age in seconds, $2: the batch size.
_CUTOFF = "now() - make_interval(secs => $1)"
_ENDED_SESSIONS = f"""
    WITH doomed AS (
        SELECT id FROM auth.sessions
        WHERE expires_at < {_CUTOFF} OR revoked_at < {_CUTOFF}
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ),
    tokens AS (
        DELETE FROM auth.refresh_tokens t USING doomed d WHERE t.session_id = d.id RETURNING 1
    ),
    gone AS (DELETE FROM auth.sessions s USING doomed d WHERE s.id = d.id RETURNING 1)
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM tokens)
"""
_EXPIRED_REFRESH_TOKENS = f"""
    WITH doomed AS (
        SELECT token_hash FROM auth.refresh_tokens WHERE expires_at < {_CUTOFF}
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM auth.refresh_tokens t USING doomed d WHERE t.token_hash = d.token_hash
        RETURNING 1
    )
    SELECT count(*), 0 FROM gone
"""
_SPENT_RESET_TOKENS = f"""
    WITH doomed AS (
        SELECT token_hash FROM auth.password_resets
        WHERE used_at < {_CUTOFF} OR expires_at < {_CUTOFF}
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM auth.password_resets t USING doomed d WHERE t.token_hash = d.token_hash
        RETURNING 1
    )
    SELECT count(*), 0 FROM gone
"""

_SPENT_VERIFICATION_TOKENS = f"""
    WITH doomed AS (
        SELECT token_hash FROM auth.email_verifications
        WHERE used_at < {_CUTOFF} OR expires_at < {_CUTOFF}
        LIMIT $2 FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM auth.email_verifications t USING doomed d
        WHERE t.token_hash = d.token_hash RETURNING 1
    )
    SELECT count(*), 0 FROM gone
"""


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows of each kind one prune deleted."""

    sessions: int = 0
    refresh_tokens: int = 0
    reset_tokens: int = 0
    verification_tokens: int = 0


async def prune_expired(pool: asyncpg.Pool, settings: PruneSettings) -> Pruned:
    """Delete every row that has been of no use for longer than its configured age."""
    batch = settings.prune_batch_size
    sessions, session_tokens = await _in_batches(
        pool, _ENDED_SESSIONS, settings.prune_sessions_after_seconds, batch
    )
    expired_tokens, _ = await _in_batches(
        pool, _EXPIRED_REFRESH_TOKENS, settings.prune_refresh_tokens_after_seconds, batch
    )
    reset_tokens, _ = await _in_batches(
        pool, _SPENT_RESET_TOKENS, settings.prune_reset_tokens_after_seconds, batch
    )
    verification_tokens, _ = await _in_batches(
        pool, _SPENT_VERIFICATION_TOKENS, settings.prune_verification_tokens_after_seconds, batch
    )
    return Pruned(sessions, session_tokens + expired_tokens, reset_tokens, verification_tokens)


async def _in_batches(
    pool: asyncpg.Pool, statement: str, age_seconds: float, batch: int
) -> tuple[int, int]:
    """Run a batch statement until a batch comes back short; the sums of its two counts."""
    first = second = 0
    while True:
        row = await pool.fetchrow(statement, age_seconds, batch)
        assert row is not None
        first, second = first + row[0], second + row[1]
        if row[0] < batch:
            return first, second
