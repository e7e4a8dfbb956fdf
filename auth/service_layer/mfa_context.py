"""What the second factor's use cases work with, wired in auth/bootstrap.py."""

from collections.abc import Callable
from dataclasses import dataclass

from auth.adapters.mfa_challenges import ChallengeStore
from auth.adapters.rate_limit import LoginRateLimiter
from auth.domain.mfa_errors import MfaUnavailableError
from auth.security.mfa_keys import MfaKeys
from auth.service_layer.unit_of_work import MfaUnitOfWork


@dataclass(frozen=True)
class MfaKit:
    """The MFA collaborators: its tables, key, challenges and the wrong-code limiter.

    `limiter` is the login limiter's machinery (Redis fixed windows) with its own key space
    and limit: wrong codes count per user (its id) and per client address.
    """

    uow_factory: Callable[[], MfaUnitOfWork]
    keys: Callable[[], MfaKeys]
    challenges: ChallengeStore
    limiter: LoginRateLimiter
    issuer: str = "userbus"
    challenge_ttl_seconds: int = 300


def kit_of(mfa: MfaKit | None) -> MfaKit:
    """The kit, or MfaUnavailableError where none was wired (a context built without one)."""
    if mfa is None:
        raise MfaUnavailableError()
    return mfa
