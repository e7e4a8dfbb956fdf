"""Use cases of the registration saga: activate or compensate a pending account.

With `require_profile` on, a new account is `pending` until the profile service answers.
ProfileCreated completes the registration (UserStatusChanged pending -> active);
ProfileRejected fails it (UserDeleted, reason `registration_failed`); an account still
pending after the timeout expires (UserDeleted, reason `registration_expired`). Each change
goes through the unit of work, so the events reach the outbox in the same transaction.
An answer for an account that is no longer pending (already active, deleted, expired,
settled by an admin) changes nothing.
"""

from datetime import timedelta
from uuid import UUID

from auth.security.audit import AuditLog
from auth.service_layer.context import now
from auth.service_layer.unit_of_work import UnitOfWork

REGISTRATION_FAILED = "registration_failed"
REGISTRATION_EXPIRED = "registration_expired"


async def complete_registration(uow: UnitOfWork, user_id: UUID, *, audit: AuditLog) -> bool:
    """Activate the pending account `user_id`; whether it was pending."""
    async with uow:
        user = await uow.users.get(user_id)
        if user is None or not user.complete_registration(now=now()):
            return False
        await uow.commit()
    audit.record("registration_completed", user_id=user_id, username=user.username)
    return True


async def fail_registration(uow: UnitOfWork, user_id: UUID, *, why: str, audit: AuditLog) -> bool:
    """Delete the pending account `user_id` (the profile was refused); whether it was pending."""
    async with uow:
        user = await uow.users.get(user_id)
        if user is None or not user.fail_registration(now=now(), reason=REGISTRATION_FAILED):
            return False
        await uow.commit()
    audit.record("registration_failed", user_id=user_id, username=user.username, why=why)
    return True


async def expire_registrations(
    uow: UnitOfWork, *, timeout: timedelta, limit: int, audit: AuditLog
) -> int:
    """Delete up to `limit` accounts pending for longer than `timeout`, in one transaction.

    The rows are locked with SKIP LOCKED, so two sweepers share the work. An answer applied
    to one of them at the same moment either holds the row (this sweep skips it) or fails
    its versioned update once this sweep has committed, and its retry finds the account
    gone: a no-op.
    """
    moment = now()
    async with uow:
        expired = await uow.users.pending_registrations(
            created_before=moment - timeout, limit=limit
        )
        for user in expired:
            user.fail_registration(now=moment, reason=REGISTRATION_EXPIRED)
        if expired:
            await uow.commit()
    for user in expired:
        audit.record("registration_expired", user_id=user.id, username=user.username)
    return len(expired)
