"""The directory's HTTP API: GET /me admits the bearer of a verified token; errors as HTTP."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.jwks import JwksUnavailableError, JwksVerifier, TokenRejectedError, VerifiedClaims
from downstream_examples.lazy_directory.members import Member, UserDeletedError, admit_token_holder


@dataclass(frozen=True)
class Services:
    """What the lifespan opened; routes reach it through `ServicesDep`."""

    engine: AsyncEngine
    verifier: JwksVerifier


class NotAuthenticatedError(Exception):
    """The request carries no bearer token."""


def get_services(request: Request) -> Services:
    """The parts of the running app."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="an access token of the auth service")


async def verified_claims(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> VerifiedClaims:
    """The claims of the request's bearer token, checked against the auth service's JWKS."""
    if credentials is None:
        raise NotAuthenticatedError
    return await services.verifier.verify(credentials.credentials)


ClaimsDep = Annotated[VerifiedClaims, Depends(verified_claims)]
router = APIRouter(tags=["directory"])


@router.get("/me", response_model=Member, responses={401: {}, 503: {}})
async def me(claims: ClaimsDep, services: ServicesDep) -> Member:
    """The caller as a member, added on first sight of their token (no event needed)."""
    async with services.engine.begin() as conn:
        return await admit_token_holder(conn, claims)


def _error(status: int, code: str, message: str) -> JSONResponse:
    # RFC 6750: a refused bearer token is answered with a Bearer challenge.
    headers = {"WWW-Authenticate": f'Bearer error="{code}"'} if status == 401 else None
    return JSONResponse(
        {"detail": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _not_authenticated(request: Request, exc: Exception) -> JSONResponse:
    return _error(401, "not_authenticated", "a bearer token is required")


async def _token_rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TokenRejectedError)
    return _error(401, "invalid_token", exc.reason)


async def _user_deleted(request: Request, exc: Exception) -> JSONResponse:
    return _error(401, "user_deleted", "the token's user has been deleted")


async def _jwks_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The issuer is away, the token may be fine: the client should retry, not log in again.
    return _error(503, "jwks_unavailable", "the auth service's keys cannot be fetched")


def install_error_handlers(app: FastAPI) -> None:
    """Map the directory's errors to HTTP, in this one place."""
    app.add_exception_handler(NotAuthenticatedError, _not_authenticated)
    app.add_exception_handler(TokenRejectedError, _token_rejected)
    app.add_exception_handler(UserDeletedError, _user_deleted)
    app.add_exception_handler(JwksUnavailableError, _jwks_unavailable)
