"""/auth: logging in and changing the password."""

from fastapi import APIRouter, Response, status

from auth.api.deps import ServicesDep
from auth.api.schemas import LoginRequest, PasswordChange, TokenOut
from auth.service_layer import services as use_cases

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=TokenOut)
async def login(body: LoginRequest, services: ServicesDep) -> TokenOut:
    """Exchange a username (or email) and password for an access token."""
    user = await use_cases.authenticate(
        services.uow_factory, services.hasher, login=body.username, password=body.password
    )
    issued = services.tokens.issue(user)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(body: PasswordChange, services: ServicesDep) -> Response:
    """Replace the password, proven by the old one."""
    await use_cases.change_password(
        services.uow_factory,
        services.hasher,
        login=body.username,
        old_password=body.old_password,
        new_password=body.new_password,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
