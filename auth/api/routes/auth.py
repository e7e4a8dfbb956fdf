"""/auth: logging in (JSON, OAuth2 form, HTTP Basic), refreshing and logging out."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from auth.api.deps import ClientAddress, CurrentPrincipal, ServicesDep
from auth.api.errors import error_body
from auth.api.schemas import LoginRequest, RefreshRequest, TokenForm, TokenOut, UserOut
from auth.domain.errors import InvalidCredentialsError
from auth.service_layer.authentication import (
    TokenPair,
    check_credentials,
    log_in,
    log_out,
    log_out_everywhere,
    refresh,
)

router = APIRouter(prefix="/auth", tags=["auth"])
_basic = HTTPBasic(auto_error=False, realm="userbus")


def _token_out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/login", response_model=TokenOut)
async def login(body: LoginRequest, services: ServicesDep, address: ClientAddress) -> TokenOut:
    """Exchange a username (or email) and password for an access and a refresh token."""
    return _token_out(
        await log_in(services.auth, login=body.username, password=body.password, address=address)
    )


@router.post("/token", response_model=TokenOut)
async def token(
    form: Annotated[TokenForm, Form()],
    services: ServicesDep,
    address: ClientAddress,
) -> TokenOut:
    """The OAuth2 password flow (form fields `username`, `password`): Swagger's Authorize."""
    return _token_out(
        await log_in(services.auth, login=form.username, password=form.password, address=address)
    )


@router.get("/basic", response_model=UserOut, responses={401: {"description": "bad credentials"}})
async def basic(
    request: Request,
    services: ServicesDep,
    address: ClientAddress,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> UserOut | JSONResponse:
    """Check HTTP Basic credentials: 200 with the user, or 401 asking for Basic."""
    challenge = {"WWW-Authenticate": 'Basic realm="userbus"'}
    if credentials is not None and "\x00" in credentials.username + credentials.password:
        credentials = None  # no account has such a name or password
    if credentials is None:
        body = error_body("not_authenticated", "HTTP Basic credentials are required")
        return JSONResponse(body, status_code=401, headers=challenge)
    try:
        user = await check_credentials(
            services.auth,
            login=credentials.username,
            password=credentials.password,
            address=address,
        )
    except InvalidCredentialsError as exc:
        return JSONResponse(error_body(exc.code, exc.message), status_code=401, headers=challenge)
    return UserOut.of(user)


@router.post("/refresh", response_model=TokenOut)
async def refresh_tokens(
    body: RefreshRequest, services: ServicesDep, address: ClientAddress
) -> TokenOut:
    """A new token pair for a refresh token, which stops working (rotation).

    Presenting a refresh token that was already exchanged ends its whole session.
    """
    return _token_out(
        await refresh(services.auth, refresh_token=body.refresh_token, address=address)
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, services: ServicesDep) -> Response:
    """End the session of this refresh token (its access tokens stop working too)."""
    await log_out(services.auth, refresh_token=body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """End every session of the caller, this one included."""
    await log_out_everywhere(services.auth, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
