"""`userbus users rotate-mfa-key`: every TOTP secret re-encrypted under the current key.

Secrets also move one by one as their codes are accepted (auth/service_layer/mfa_codes.py),
but a user who never logs in would keep the previous key needed forever; this moves them
all at once, so the operator knows when USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS can be emptied.
"""

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from auth.adapters.orm import mfa_totp
from auth.domain.mfa_errors import MfaUnavailableError
from auth.security.mfa_keys import LazyMfaKeys
from auth.settings import AuthSettings

# Rows re-encrypted per transaction: each batch's rows are locked only while it runs.
BATCH = 500


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: secrets moved, already current, and readable by no key."""

    moved: int
    current: int
    unreadable: int


async def rotate_mfa_secrets(settings: AuthSettings) -> Rotation:
    """Re-encrypt under the current key every secret a previous key encrypted."""
    keys = LazyMfaKeys(settings).get()
    engine = create_async_engine(settings.database_url)
    moved = current = unreadable = 0
    after = None
    try:
        while True:
            async with engine.begin() as conn:
                query = select(mfa_totp.c.user_id, mfa_totp.c.secret_ciphertext)
                if after is not None:
                    query = query.where(mfa_totp.c.user_id > after)
                rows = (
                    await conn.execute(
                        query.order_by(mfa_totp.c.user_id).limit(BATCH).with_for_update()
                    )
                ).all()
                for user_id, ciphertext in rows:
                    if keys.is_current(ciphertext):
                        current += 1
                        continue
                    try:
                        rotated = keys.rotated(ciphertext)
                    except MfaUnavailableError:
                        unreadable += 1  # left as it is: an admin reset is its way out
                        continue
                    await conn.execute(
                        update(mfa_totp)
                        .where(mfa_totp.c.user_id == user_id)
                        .values(secret_ciphertext=rotated)
                    )
                    moved += 1
            if len(rows) < BATCH:
                return Rotation(moved=moved, current=current, unreadable=unreadable)
            after = rows[-1].user_id
    finally:
        await engine.dispose()
