"""FastAPI dependencies: the running service's parts and the caller's identity."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.domain.errors import NotAuthenticatedError
from auth.domain.passwords import PasswordHasher
from auth.security.tokens import TokenService
from auth.service_layer.services import Principal, UnitOfWorkFactory
from auth.settings import AuthSettings


@dataclass(frozen=True)
class Services:
    """What the lifespan opened; routes reach it through the dependencies below."""

    settings: AuthSettings
    engine: AsyncEngine
    uow_factory: UnitOfWorkFactory
    hasher: PasswordHasher
    tokens: TokenService


def get_services(request: Request) -> Services:
    """The parts of the running app."""
    services: Services = request.app.state.services
    return services


_bearer = HTTPBearer(auto_error=False, description="an access token from POST /auth/login")


def get_principal(
    services: Annotated[Services, Depends(get_services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller proven by the bearer token; NotAuthenticatedError without a valid one."""
    if credentials is None:
        raise NotAuthenticatedError("a bearer token is required")
    return services.tokens.verify(credentials.credentials)


ServicesDep = Annotated[Services, Depends(get_services)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
