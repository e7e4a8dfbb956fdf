"""/auth/verify-email: asking for a verification mail, and confirming its token."""

import logging
from typing import Any
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Response, status

from auth.api.deps import ClientAddress, OptionalPrincipal, ServicesDep
from auth.api.schemas import VerificationConfirm, VerificationRequest
from auth.domain.errors import InvalidFieldError
from auth.service_layer.context import AuthContext
from auth.service_layer.verification import (
    confirm_verification,
    limit_mail,
    request_own_verification,
    request_verification,
    send_verification,
)

router = APIRouter(prefix="/auth/verify-email", tags=["verification"])
logger = logging.getLogger(__name__)

_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "too many mails for this address or from this client"}
}


@router.post(
    "/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=_LIMITED,
)
async def request(
    body: VerificationRequest,
    services: ServicesDep,
    principal: OptionalPrincipal,
    address: ClientAddress,
    background: BackgroundTasks,
) -> Response:
    """Mail a new verification token: to the caller (bearer token), or to the account with
    `email` if it has one and is unverified. Always 202, the same for every address."""
    if principal is not None:
        await request_own_verification(
            services.auth, principal=principal, email=_email(body), address=address
        )
        return Response(status_code=status.HTTP_202_ACCEPTED)
    email = _email(body)
    if email is None:
        raise InvalidFieldError("give an email address, or a bearer token", "email")
    # Counted before anything is looked up; the lookup and the mail run after the answer is
    # sent, so neither the answer nor its timing depends on whether the address is known.
    await limit_mail(services.auth, email=email, address=address)
    background.add_task(_send_requested, services.auth, email)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm(body: VerificationConfirm, services: ServicesDep) -> Response:
    """Mark the address verified with the mailed token; used, expired, unknown tokens, and
    tokens mailed to an address the account no longer has, are a 400."""
    await confirm_verification(services.auth, token=body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _email(body: VerificationRequest) -> str | None:
    return None if body.email is None else str(body.email)


async def _send_requested(ctx: AuthContext, email: str) -> None:
    try:
        await request_verification(ctx, email=email)
    except Exception:
        # Nobody waits for this answer: log it (never the token: no error holds it).
        logger.exception("email verification: the request could not be completed")


async def mail_verification(ctx: AuthContext, user_id: UUID) -> None:
    """A background task of registration and email changes: the user's verification mail."""
    try:
        await send_verification(ctx, user_id=user_id)
    except Exception:
        # The account change stands; the user can ask for another mail.
        logger.exception("email verification: the mail could not be sent")
