"""What the use cases work with, wired once by the app and handed to each call."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth.adapters.rate_limit import LoginRateLimiter
from auth.domain.passwords import PasswordHasher
from auth.security.audit import AuditLog
from auth.security.tokens import TokenService
from auth.service_layer.unit_of_work import UnitOfWork
from infra.mail import Mailer

UnitOfWorkFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class Lifetimes:
    """How long sessions and reset tokens live."""

    refresh_token: timedelta = timedelta(days=30)
    password_reset: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class AuthContext:
    """The collaborators of the authentication use cases (tests pass fakes)."""

    uow_factory: UnitOfWorkFactory
    hasher: PasswordHasher
    tokens: TokenService
    limiter: LoginRateLimiter
    mailer: Mailer
    audit: AuditLog
    lifetimes: Lifetimes = Lifetimes()
    password_reset_url: str | None = None


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)
