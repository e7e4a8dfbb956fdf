"""Use cases of the TOTP second factor: enrol, confirm, disable, and an admin's reset."""

from dataclasses import dataclass

from auth.domain.errors import (
    InvalidCredentialsError,
    NotAuthenticatedError,
    TooManyAttemptsError,
)
from auth.domain.mfa import new_recovery_codes, new_totp_secret, normalise_recovery_code
from auth.domain.mfa import provisioning_uri as otpauth_uri
from auth.domain.mfa_errors import MfaAlreadyEnabledError, MfaNotEnabledError, MfaNotPendingError
from auth.domain.model import Principal, User
from auth.service_layer.context import AuthContext, now
from auth.service_layer.mfa_codes import prove_second_factor
from auth.service_layer.mfa_context import MfaKit, kit_of
from auth.service_layer.unit_of_work import MfaUnitOfWork
from auth.service_layer.users import admin_target


@dataclass(frozen=True)
class Enrolment:
    """A started enrolment: the secret for the authenticator app, shown this once."""

    secret: str
    otpauth_uri: str


async def start_totp(ctx: AuthContext, *, principal: Principal) -> Enrolment:
    """A new pending TOTP secret for the caller; it counts only once a code confirms it.

    Starting again replaces a pending secret. With TOTP on already: MfaAlreadyEnabledError.
    """
    kit = kit_of(ctx.mfa)
    secret = new_totp_secret()
    async with kit.uow_factory() as uow:
        user = await _caller(uow, principal)
        if not await uow.mfa.start(user.id, kit.keys().encrypt(secret), now=now()):
            raise MfaAlreadyEnabledError()
        await uow.commit()
    ctx.audit.record("mfa_enrolment_started", user_id=user.id)
    uri = otpauth_uri(secret, account=user.username, issuer=kit.issuer)
    return Enrolment(secret=secret, otpauth_uri=uri)


async def confirm_totp(
    ctx: AuthContext, *, principal: Principal, code: str, address: str | None
) -> list[str]:
    """Turn TOTP on with a first code from the app; the ten recovery codes, shown this once.

    Records MfaEnabled. Only the codes' keyed digests are stored.
    """
    kit = kit_of(ctx.mfa)
    async with kit.uow_factory() as uow:
        user = await _caller(uow, principal)
        stored = await uow.mfa.get(user.id)
        if stored is None or stored.confirmed:
            raise MfaAlreadyEnabledError() if stored else MfaNotPendingError()
        await prove_second_factor(ctx, kit, uow, user, code, address=address, pending=True)
        moment = now()
        await uow.mfa.confirm(user.id, now=moment)
        codes = await _new_recovery_codes(kit, uow, user)
        user.enable_mfa(now=moment)
        await uow.commit()
    ctx.audit.record("mfa_enabled", user_id=user.id, address=address)
    return codes


async def replace_recovery_codes(
    ctx: AuthContext, *, principal: Principal, code: str, address: str | None
) -> list[str]:
    """Ten new recovery codes for the caller, proven by a TOTP code; the old ones stop working.

    For a user who spent or lost them, and after a key rotation (the new digests are keyed
    by the current key). No event: the codes are the auth service's own business.
    """
    kit = kit_of(ctx.mfa)
    async with kit.uow_factory() as uow:
        user = await _caller(uow, principal)
        if not await uow.mfa.enabled(user.id):
            raise MfaNotEnabledError()
        await prove_second_factor(ctx, kit, uow, user, code, address=address)
        codes = await _new_recovery_codes(kit, uow, user)
        await uow.commit()
    ctx.audit.record("mfa_recovery_codes_replaced", user_id=user.id, address=address)
    return codes


async def _new_recovery_codes(kit: MfaKit, uow: MfaUnitOfWork, user: User) -> list[str]:
    codes = new_recovery_codes()
    digests = [kit.keys().recovery_digest(normalise_recovery_code(c)) for c in codes]
    await uow.mfa.replace_recovery_codes(user.id, digests, now=now())
    return codes


async def disable_totp(
    ctx: AuthContext, *, principal: Principal, password: str, code: str, address: str | None
) -> None:
    """Turn the caller's TOTP off, proven by the password and a TOTP or recovery code.

    Both count against the limits of wrong codes (a wrong password as a wrong code).
    """
    kit = kit_of(ctx.mfa)
    async with kit.uow_factory() as uow:
        user = await _caller(uow, principal)
        if not await uow.mfa.enabled(user.id):
            raise MfaNotEnabledError()
        retry_after = await kit.limiter.retry_after(str(user.id), address)
        if retry_after is not None:
            raise TooManyAttemptsError(retry_after)
        if not await ctx.hasher.verify(password, user.password_hash):
            ctx.audit.record("mfa_failed", user_id=user.id, address=address, reason="password")
            await kit.limiter.record_failure(str(user.id), address)
            raise InvalidCredentialsError(reason="wrong_password")
        await prove_second_factor(ctx, kit, uow, user, code, address=address)
        await _remove(uow, user, reason="user")
    ctx.audit.record("mfa_disabled", user_id=user.id, address=address)


async def reset_mfa(ctx: AuthContext, *, actor: Principal, username: str) -> None:
    """An admin turns a user's second factor off (a lost device); audited, MfaDisabled."""
    kit = kit_of(ctx.mfa)
    async with kit.uow_factory() as uow:
        user = await admin_target(uow, actor, username)
        if not await uow.mfa.enabled(user.id):
            raise MfaNotEnabledError()
        await _remove(uow, user, reason="admin")
    ctx.audit.record("mfa_reset", user_id=user.id, username=user.username, by=actor.user_id)


async def _remove(uow: MfaUnitOfWork, user: User, *, reason: str) -> None:
    await uow.mfa.remove(user.id)
    user.disable_mfa(now=now(), reason=reason)
    await uow.commit()


async def _caller(uow: MfaUnitOfWork, principal: Principal) -> User:
    user = await uow.users.get(principal.user_id)
    if user is None:
        raise NotAuthenticatedError("the token's user no longer exists")
    return user
