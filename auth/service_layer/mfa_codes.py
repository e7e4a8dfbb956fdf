"""Checking a second-factor code: TOTP once per time step, a recovery code once, with limits."""

from typing import Literal

from auth.domain.errors import TooManyAttemptsError
from auth.domain.mfa import TotpEnrolment, is_totp_code, matching_step, normalise_recovery_code
from auth.domain.mfa_errors import InvalidMfaCodeError
from auth.domain.model import User
from auth.service_layer.context import AuthContext, now
from auth.service_layer.mfa_context import MfaKit
from auth.service_layer.unit_of_work import MfaUnitOfWork

Method = Literal["totp", "recovery_code"]


async def prove_second_factor(
    ctx: AuthContext,
    kit: MfaKit,
    uow: MfaUnitOfWork,
    user: User,
    code: str,
    *,
    address: str | None,
    pending: bool = False,
) -> Method:
    """Accept `code` for the user inside `uow`, or raise; which kind of code it was.

    Wrong codes count per user and per address (the login limiter's machinery); at the
    limit, even a right code waits (TooManyAttemptsError) so guessing gains nothing. A TOTP
    code is accepted once: its time step is recorded in the same transaction, and a step
    not later than the last accepted one is refused (a replay within the window). With
    `pending`, the enrolment being confirmed is checked, and recovery codes do not count.
    """
    key = str(user.id)
    retry_after = await kit.limiter.retry_after(key, address)
    if retry_after is not None:
        ctx.audit.record("mfa_refused", user_id=user.id, address=address, retry_after=retry_after)
        raise TooManyAttemptsError(retry_after)
    method = await _accepted(kit, uow, user, code, pending=pending)
    if method is None:
        ctx.audit.record("mfa_failed", user_id=user.id, address=address)
        locked_for = await kit.limiter.record_failure(key, address)
        if locked_for is not None:
            ctx.audit.record("mfa_locked", user_id=user.id, address=address, seconds=locked_for)
        raise InvalidMfaCodeError()
    await kit.limiter.record_success(key)
    return method


async def _accepted(
    kit: MfaKit, uow: MfaUnitOfWork, user: User, code: str, *, pending: bool
) -> Method | None:
    stored = await uow.mfa.get(user.id)
    if stored is None or stored.confirmed == pending:
        return None
    if is_totp_code(code):
        enrolment = TotpEnrolment(
            secret=kit.keys().decrypt(stored.secret_ciphertext),
            confirmed=stored.confirmed,
            last_used_step=stored.last_used_step,
        )
        step = matching_step(enrolment.secret, code, now=now(), after=enrolment.last_used_step)
        # The conditional update is the replay guard, also between concurrent requests.
        if step is not None and await uow.mfa.accept_step(user.id, step):
            if not kit.keys().is_current(stored.secret_ciphertext):
                # Encrypted under a previous key: moved to the current one in this
                # transaction, so that key can leave the settings once all have moved.
                rotated = kit.keys().rotated(stored.secret_ciphertext)
                await uow.mfa.replace_secret(user.id, rotated)
            return "totp"
        return None
    if pending:
        return None
    digests = kit.keys().recovery_digests(normalise_recovery_code(code))
    if await uow.mfa.spend_recovery_code(user.id, digests, now=now()):
        return "recovery_code"
    return None
