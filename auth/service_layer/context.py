"""What the use cases work with, wired once (auth/bootstrap.py) and handed to each call.

Every use case takes `ctx: AuthContext` as its first parameter, and keywords after it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from auth.adapters.principals import PrincipalStore
from auth.adapters.rate_limit import LoginRateLimiter, MailRateLimiter
from auth.domain.model import Principal, User
from auth.domain.passwords import PasswordHasher
from auth.security.audit import AuditLog
from auth.security.tokens import IssuedToken
from auth.service_layer.mfa_context import MfaKit
from auth.service_layer.unit_of_work import UnitOfWork
from infra.mail import Mailer

UnitOfWorkFactory = Callable[[], UnitOfWork]


class AccessTokens(Protocol):
    """Issues and verifies access tokens (auth.security.tokens.TokenService)."""

    def issue(
        self, user: User, *, session_id: UUID | None = None, now: datetime | None = None
    ) -> IssuedToken:
        """A signed access token for the user, bound to its session when it has one."""
        ...

    def verify(self, token: str) -> Principal:
        """The principal a token names; NotAuthenticatedError for any token we did not issue."""
        ...

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set other services verify tokens with."""
        ...


@dataclass(frozen=True)
class Lifetimes:
    """How long sessions, reset and verification tokens live."""

    refresh_token: timedelta = timedelta(days=30)
    password_reset: timedelta = timedelta(minutes=30)
    email_verification: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class AuthContext:
    """The collaborators and settings of the auth use cases (tests pass fakes)."""

    uow_factory: UnitOfWorkFactory
    # The bearer check reads committed state in one round trip, outside any unit of work.
    principals: PrincipalStore
    hasher: PasswordHasher
    tokens: AccessTokens
    limiter: LoginRateLimiter
    mailer: Mailer
    audit: AuditLog
    lifetimes: Lifetimes = Lifetimes()
    password_reset_url: str | None = None
    # The registration saga: new accounts start `pending` until the profile service answers.
    require_profile: bool = False
    # The TOTP second factor (auth/bootstrap.py wires it; contexts without it have no MFA).
    mfa: MfaKit | None = None
    # Mails sent on request and registrations; None (tests of other things): unlimited.
    mail_limiter: MailRateLimiter | None = None
    email_verification_url: str | None = None
    require_verified_email: bool = False


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)
