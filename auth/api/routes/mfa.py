"""/auth/mfa: enrolling, confirming and disabling TOTP, and the second step of a login."""

from fastapi import APIRouter, Response, status

from auth.api.deps import ClientAddress, CurrentPrincipal, ServicesDep, UserAgent
from auth.api.mfa_schemas import (
    MfaVerifyRequest,
    RecoveryCodesOut,
    RecoveryCodesRequest,
    TotpConfirmRequest,
    TotpDisableRequest,
    TotpEnrolmentOut,
)
from auth.api.schemas import TokenOut, UsernameParam
from auth.domain.sessions import Client
from auth.service_layer import mfa as use_cases
from auth.service_layer.mfa_login import verify_mfa_login

router = APIRouter(prefix="/auth/mfa", tags=["mfa"])
admin_router = APIRouter(prefix="/users", tags=["users"])


@router.post("/totp", response_model=TotpEnrolmentOut)
async def start(principal: CurrentPrincipal, services: ServicesDep) -> TotpEnrolmentOut:
    """Start enrolling TOTP: a secret (and its otpauth URI and QR code), pending until confirmed.

    409 `mfa_already_enabled` when TOTP is on. Starting again replaces a pending secret.
    """
    enrolment = await use_cases.start_totp(services.auth, principal=principal)
    return TotpEnrolmentOut.of(enrolment)


@router.post("/totp/confirm", response_model=RecoveryCodesOut)
async def confirm(
    body: TotpConfirmRequest,
    principal: CurrentPrincipal,
    services: ServicesDep,
    address: ClientAddress,
) -> RecoveryCodesOut:
    """Turn TOTP on with a code from the app: ten single-use recovery codes, shown once."""
    codes = await use_cases.confirm_totp(
        services.auth, principal=principal, code=body.code, address=address
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/recovery-codes", response_model=RecoveryCodesOut)
async def replace_recovery_codes(
    body: RecoveryCodesRequest,
    principal: CurrentPrincipal,
    services: ServicesDep,
    address: ClientAddress,
) -> RecoveryCodesOut:
    """Ten new recovery codes, shown once, for a TOTP code; the old ones stop working.

    409 `mfa_not_enabled` without TOTP on; 401 `invalid_mfa_code` for a wrong code.
    """
    codes = await use_cases.replace_recovery_codes(
        services.auth, principal=principal, code=body.code, address=address
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete("/totp", status_code=status.HTTP_204_NO_CONTENT)
async def disable(
    body: TotpDisableRequest,
    principal: CurrentPrincipal,
    services: ServicesDep,
    address: ClientAddress,
) -> Response:
    """Turn TOTP off, with your password and a TOTP or recovery code."""
    await use_cases.disable_totp(
        services.auth, principal=principal, password=body.password, code=body.code,
        address=address,
    )  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/verify", response_model=TokenOut)
async def verify(
    body: MfaVerifyRequest, services: ServicesDep, address: ClientAddress, agent: UserAgent
) -> TokenOut:
    """The second step of a login: the login's challenge and a TOTP or recovery code → tokens.

    A wrong code leaves the challenge usable (until the limits answer 429); the first right
    one spends it. A TOTP code works once; a recovery code works once.
    """
    pair = await verify_mfa_login(
        services.auth, challenge=body.challenge, code=body.code,
        client=Client.of(address, agent),
    )  # fmt: skip
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@admin_router.delete("/{username}/mfa", status_code=status.HTTP_204_NO_CONTENT)
async def reset(
    username: UsernameParam, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Turn a user's second factor off, as after a lost device (admins only; audited)."""
    await use_cases.reset_mfa(services.auth, actor=principal, username=username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
