"""The one place where domain errors become HTTP responses."""

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from auth.adapters.rate_limit import RateLimiterUnavailableError
from auth.domain.errors import (
    AuthError,
    ConcurrentUpdateError,
    EmailNotVerifiedError,
    EmailTakenError,
    InvalidClientError,
    InvalidCredentialsError,
    InvalidCursorError,
    InvalidFieldError,
    InvalidRefreshTokenError,
    InvalidResetTokenError,
    InvalidVerificationTokenError,
    LastAdminError,
    NotAuthenticatedError,
    PermissionDeniedError,
    RegistrationPendingError,
    TooManyAttemptsError,
    UsernameTakenError,
    UserNotFoundError,
)
from auth.domain.mfa_errors import (
    InvalidMfaChallengeError,
    InvalidMfaCodeError,
    MfaAlreadyEnabledError,
    MfaNotEnabledError,
    MfaNotPendingError,
    MfaRequiredError,
    MfaUnavailableError,
    SessionNotFoundError,
)
from consumers.failures import is_transient

STATUS_OF: dict[type[AuthError], int] = {
    UsernameTakenError: 409,
    EmailTakenError: 409,
    ConcurrentUpdateError: 409,
    LastAdminError: 409,
    InvalidCredentialsError: 401,
    InvalidClientError: 401,
    NotAuthenticatedError: 401,
    InvalidRefreshTokenError: 401,
    PermissionDeniedError: 403,
    RegistrationPendingError: 403,
    EmailNotVerifiedError: 403,
    UserNotFoundError: 404,
    InvalidResetTokenError: 400,
    InvalidVerificationTokenError: 400,
    InvalidCursorError: 400,
    TooManyAttemptsError: 429,
    SessionNotFoundError: 404,
    InvalidMfaChallengeError: 401,
    InvalidMfaCodeError: 401,
    MfaAlreadyEnabledError: 409,
    MfaNotPendingError: 409,
    MfaNotEnabledError: 409,
    MfaRequiredError: 403,
    MfaUnavailableError: 503,
}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error this API answers itself."""
    return {"detail": {"code": code, "message": message}}


async def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    if isinstance(exc, InvalidFieldError):
        # The validation shape, like every other 422, naming the field and the rule broken.
        detail = [{"type": exc.code, "loc": ["body", exc.field], "msg": exc.message}]
        return JSONResponse({"detail": detail}, status_code=422)
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 400)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TooManyAttemptsError):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)


async def _limiter_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Fail closed: without the shared counters, logins would be open to unlimited guessing.
    assert isinstance(exc, RateLimiterUnavailableError)
    body = error_body("rate_limiter_unavailable", exc.message)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


# SQLSTATE classes of a database that is away: 08 connection, 53 resources (no slots),
# 57P operator intervention (shutting down, starting up).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def _database_away(exc: Exception) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES)
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # a pooled connection the server dropped
    return isinstance(exc, OSError | PoolTimeoutError) or is_transient(exc)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database (or the network to it) is away: the caller may retry, nothing is wrong
    # with the request. Any other driver error is a bug and stays a 500.
    if not _database_away(exc):
        raise exc
    body = error_body("database_unavailable", "the database is not reachable; try again")
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


_SECRET_FIELDS = ("password", "token", "secret", "code", "challenge")


def _without_secrets(error: dict[str, Any]) -> dict[str, Any]:
    # FastAPI echoes the rejected value; for a password or token that would put the secret
    # into the response (and into any log that keeps responses).
    if any(secret in str(part) for part in error.get("loc", ()) for secret in _SECRET_FIELDS):
        return {key: value for key, value in error.items() if key not in ("input", "ctx")}
    return error


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_without_secrets(error) for error in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Map every domain error to its status code and a body that says what was wrong."""
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(RateLimiterUnavailableError, _limiter_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for driver_error in (OSError, DBAPIError, PoolTimeoutError, asyncpg.PostgresError,
                         asyncpg.InterfaceError):  # fmt: skip
        app.add_exception_handler(driver_error, _database_unavailable)
