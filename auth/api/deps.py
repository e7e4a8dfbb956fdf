"""FastAPI dependencies: the running service's parts and the caller's identity."""

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, OAuth2PasswordBearer
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.domain.errors import NotAuthenticatedError
from auth.domain.model import Principal, User
from auth.domain.service_clients import EVENTS_READ, ServicePrincipal
from auth.security import proxies
from auth.security.token_cache import VerifiedTokenCache
from auth.service_layer.context import AuthContext
from auth.service_layer.feed import Wakeups
from auth.service_layer.service_clients import ServiceAccess, admit_service
from auth.service_layer.users import authenticated_user
from auth.settings import AuthSettings
from infra.event_log import EventLog


@dataclass(frozen=True)
class Services:
    """What the lifespan opened; routes reach it through the dependencies below."""

    settings: AuthSettings
    engine: AsyncEngine
    auth: AuthContext
    access: ServiceAccess
    event_log: EventLog
    wakeups: Wakeups
    # Bearer tokens already verified by this process: their signatures are checked once.
    bearer_tokens: VerifiedTokenCache = field(default_factory=VerifiedTokenCache)


async def get_services(request: Request) -> Services:
    """The parts of the running app."""
    services: Services = request.app.state.services
    return services


# The password flow lets Swagger UI's "Authorize" log in through POST /auth/token.
_bearer = OAuth2PasswordBearer(
    tokenUrl="/auth/token",
    auto_error=False,
    description="an access token from POST /auth/login or /auth/token",
)


async def get_principal(
    services: Annotated[Services, Depends(get_services)],
    token: Annotated[str | None, Depends(_bearer)],
) -> Principal:
    """The caller proven by the bearer token, whose account and session are still good."""
    principal, _ = await _authenticated(services, token)
    return principal


async def get_current_user(
    services: Annotated[Services, Depends(get_services)],
    token: Annotated[str | None, Depends(_bearer)],
) -> User:
    """The caller's account, as loaded while checking the token (no second lookup)."""
    _, user = await _authenticated(services, token)
    return user


async def _authenticated(services: Services, token: str | None) -> tuple[Principal, User]:
    if token is None:
        raise NotAuthenticatedError("a bearer token is required")
    # The token's own validity once per token; its user and session on every request.
    principal = services.bearer_tokens.verify(token, services.auth.tokens.verify)
    return principal, await authenticated_user(services.auth, principal=principal)


class _BearerCheck(SecurityBase):
    """The whole bearer check as a single dependency, documented with `_bearer`'s scheme.

    FastAPI solves each sub-dependency anew on every request, and get_principal's two (the
    services and the token) were a good part of a bearer request's own time (bench/README.md,
    "Where /users/me spends its time"). This reads both from the request, while the OpenAPI
    document (and Swagger's Authorize) shows the same security scheme as get_principal.
    """

    def __init__(self, scheme: OAuth2PasswordBearer) -> None:
        self.model = scheme.model
        self.scheme_name = scheme.scheme_name
        self._scheme = scheme

    async def checked(self, request: Request) -> tuple[Principal, User]:
        """The caller's principal and account, as get_principal and get_current_user check."""
        return await _authenticated(await get_services(request), await self._scheme(request))


class _PrincipalCheck(_BearerCheck):
    async def __call__(self, request: Request) -> Principal:
        """What get_principal answers, from the request alone."""
        principal, _ = await self.checked(request)
        return principal


class _UserCheck(_BearerCheck):
    async def __call__(self, request: Request) -> User:
        """What get_current_user answers, from the request alone."""
        _, user = await self.checked(request)
        return user


async def get_optional_principal(
    services: Annotated[Services, Depends(get_services)],
    token: Annotated[str | None, Depends(_bearer)],
) -> Principal | None:
    """The caller if a bearer token came (and is good), None if none came."""
    if token is None:
        return None
    return await get_principal(services, token)


# The event feed takes service tokens only, from the client-credentials grant.
_service_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="/auth/token", scopes={EVENTS_READ: "read the event log (GET /events)"}
        )
    ),
    scheme_name="ServiceClientCredentials",
    description="a service token from POST /auth/token with grant_type=client_credentials",
    auto_error=False,
)


async def get_service(
    services: Annotated[Services, Depends(get_services)],
    authorization: Annotated[str | None, Security(_service_scheme, scopes=[EVENTS_READ])],
) -> ServicePrincipal:
    """The service client behind the bearer token, allowed to read the event log."""
    scheme, token = get_authorization_scheme_param(authorization)
    bearer = token if scheme.lower() == "bearer" and token else None
    return await admit_service(services.access, token=bearer, scope=EVENTS_READ)


async def client_address(request: Request) -> str | None:
    """The client's address, for rate limits and audit lines: the one place it is read.

    The TCP peer, or behind a proxy in USERBUS_TRUSTED_PROXIES the first untrusted address
    of X-Forwarded-For from the right (auth/security/proxies.py). `userbus api` runs uvicorn
    without its proxy headers, so the peer here is the connection's own.
    """
    services = await get_services(request)
    return proxies.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        services.settings.trusted_proxies,
    )


ServicesDep = Annotated[Services, Depends(get_services)]
CurrentPrincipal = Annotated[Principal, Depends(_PrincipalCheck(_bearer))]
CurrentUser = Annotated[User, Depends(_UserCheck(_bearer))]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]
ClientAddress = Annotated[str | None, Depends(client_address)]
CurrentService = Annotated[ServicePrincipal, Depends(get_service)]


async def user_agent(request: Request) -> str | None:
    """The User-Agent header, which the session list shows (truncated when stored)."""
    return request.headers.get("user-agent")


UserAgent = Annotated[str | None, Depends(user_agent)]
