"""/auth: logging in (JSON, OAuth2 form, HTTP Basic), refreshing and logging out."""

from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from auth.api.deps import ClientAddress, CurrentPrincipal, ServicesDep, UserAgent
from auth.api.errors import error_body
from auth.api.feed_schemas import ServiceTokenOut
from auth.api.mfa_schemas import MfaChallengeOut, login_out
from auth.api.schemas import LoginRequest, RefreshRequest, TokenForm, TokenOut, UserOut
from auth.domain.errors import InvalidClientError, InvalidCredentialsError
from auth.service_layer.authentication import (
    TokenPair,
    check_basic,
    log_in,
    log_out,
    log_out_everywhere,
    refresh,
)
from auth.service_layer.service_clients import issue_service_token

router = APIRouter(prefix="/auth", tags=["auth"])
_basic = HTTPBasic(auto_error=False, realm="userbus")
# A service client's id and secret at the token endpoint (RFC 6749 2.3.1), optional there:
# the password grant needs none, and a client may send them as form fields instead.
_client_basic = HTTPBasic(
    scheme_name="ClientBasic",
    description="a service client's id and secret, for grant_type=client_credentials",
    auto_error=False,
)


def client_credentials(form: TokenForm, basic: HTTPBasicCredentials | None) -> tuple[str, str]:
    """The client id and secret, from HTTP Basic (RFC 6749 2.3.1) or from the form."""
    in_form = form.client_id is not None or form.client_secret is not None
    if basic is not None and in_form:
        # RFC 6749 2.3: a client uses one authentication method per request.
        raise InvalidClientError("several_methods")
    if basic is not None:
        # The id and secret are form-encoded before they are put into Basic (2.3.1).
        return unquote_plus(basic.username), unquote_plus(basic.password)
    if form.client_id is None or form.client_secret is None:
        raise InvalidClientError("no_credentials")
    return form.client_id, form.client_secret


def _token_out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/login", response_model=TokenOut | MfaChallengeOut)
async def login(
    body: LoginRequest, services: ServicesDep, address: ClientAddress, agent: UserAgent
) -> TokenOut | MfaChallengeOut:
    """Exchange a username (or email) and password for an access and a refresh token.

    An account with a second factor gets `{mfa_required: true, challenge, expires_in}`
    instead: POST the challenge with a code to /auth/mfa/verify for the tokens.
    """
    result = await log_in(
        services.auth, login=body.username, password=body.password, address=address,
        user_agent=agent,
    )  # fmt: skip
    return login_out(result)


@router.post(
    "/token",
    response_model=TokenOut | ServiceTokenOut | MfaChallengeOut,
    responses={401: {"description": "bad credentials"}},
    openapi_extra={"security": [{}]},  # appended to the generated one: Basic is optional
)
async def token(
    form: Annotated[TokenForm, Form()],
    services: ServicesDep,
    address: ClientAddress,
    client: Annotated[HTTPBasicCredentials | None, Depends(_client_basic)],
    agent: UserAgent,
) -> TokenOut | ServiceTokenOut | MfaChallengeOut:
    """OAuth 2.0 token endpoint: the password grant (Swagger's Authorize), or client credentials.

    `grant_type=client_credentials` with a service client's id and secret (HTTP Basic, or the
    form fields `client_id` and `client_secret`) gives a short-lived token for the event feed.
    The password grant of an account with a second factor answers as POST /auth/login does.
    """
    if form.grant_type == "client_credentials":
        client_id, secret = client_credentials(form, client)
        issued, scope = await issue_service_token(
            services.access, client_id=client_id, client_secret=secret, address=address
        )
        return ServiceTokenOut(access_token=issued.token, expires_in=issued.expires_in, scope=scope)
    if form.username is None or form.password is None:
        missing = "username" if form.username is None else "password"
        # Raised here rather than by the form's validator, which would echo the whole form
        # (password included) in the error's `input`.
        error = {"type": "missing", "loc": ("body", missing), "msg": "Field required"}
        raise RequestValidationError([error])
    result = await log_in(
        services.auth, login=form.username, password=form.password, address=address,
        user_agent=agent,
    )  # fmt: skip
    return login_out(result)


@router.get(
    "/basic",
    response_model=UserOut,
    responses={
        401: {"description": "bad credentials"},
        403: {
            "description": "right password, but the account cannot log in this way:"
            " `mfa_required` (it has a second factor) or `email_not_verified`"
        },
    },
)
async def basic(
    request: Request,
    services: ServicesDep,
    address: ClientAddress,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> UserOut | JSONResponse:
    """Check HTTP Basic credentials: 200 with the user, or 401 asking for Basic.

    Basic cannot carry a second factor: an account with MFA gets 403 `mfa_required`.
    """
    challenge = {"WWW-Authenticate": 'Basic realm="userbus"'}
    if credentials is not None and "\x00" in credentials.username + credentials.password:
        credentials = None  # no account has such a name or password
    if credentials is None:
        body = error_body("not_authenticated", "HTTP Basic credentials are required")
        return JSONResponse(body, status_code=401, headers=challenge)
    try:
        user = await check_basic(
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
    body: RefreshRequest, services: ServicesDep, address: ClientAddress, agent: UserAgent
) -> TokenOut:
    """A new token pair for a refresh token, which stops working (rotation).

    Presenting a refresh token that was already exchanged ends its whole session.
    """
    return _token_out(
        await refresh(
            services.auth, refresh_token=body.refresh_token, address=address, user_agent=agent
        )
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
