"""/auth/password*: changing a password, and resetting a forgotten one by mail."""

import logging

from fastapi import APIRouter, BackgroundTasks, Response, status

from auth.api.deps import ClientAddress, OptionalPrincipal, ServicesDep
from auth.api.schemas import PasswordChange, PasswordResetConfirm, PasswordResetRequest
from auth.domain.errors import NotAuthenticatedError
from auth.service_layer.context import AuthContext
from auth.service_layer.passwords import (
    change_password,
    confirm_password_reset,
    request_password_reset,
)
from auth.service_layer.verification import limit_mail

router = APIRouter(prefix="/auth", tags=["passwords"])
logger = logging.getLogger(__name__)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change(
    body: PasswordChange,
    services: ServicesDep,
    principal: OptionalPrincipal,
    address: ClientAddress,
) -> Response:
    """Replace the password, proven by the old one, with `username` or a bearer token.

    With a bearer token, every other session ends; with a username, every session does.
    """
    if principal is None and body.username is None:
        raise NotAuthenticatedError("give a username, or a bearer token")
    await change_password(
        services.auth,
        old_password=body.old_password,
        new_password=body.new_password,
        login=None if principal else body.username,
        principal=principal,
        address=address,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={429: {"description": "too many mails for this address or from this client"}},
)
async def request_reset(
    body: PasswordResetRequest,
    services: ServicesDep,
    address: ClientAddress,
    background: BackgroundTasks,
) -> Response:
    """Mail a reset token if an account has this email; always 202, in the same time."""
    # Counted before anything is looked up: known and unknown addresses count alike.
    await limit_mail(services.auth, email=str(body.email), address=address)
    # The work runs after the answer is sent, so neither the answer nor its timing depends
    # on whether the address is registered.
    background.add_task(_send_reset, services.auth, str(body.email))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_reset(body: PasswordResetConfirm, services: ServicesDep) -> Response:
    """Set a new password with a reset token; used, expired or unknown tokens are a 400."""
    await confirm_password_reset(services.auth, token=body.token, new_password=body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _send_reset(ctx: AuthContext, email: str) -> None:
    try:
        await request_password_reset(ctx, email=email)
    except Exception:
        # Nobody waits for this answer: log it (without the token, which the error never
        # holds) so an operator sees that mail is failing.
        logger.exception("password reset: the request could not be completed")
