"""VerifiedTokenCache: a token's signature is checked once, until the token expires."""

from datetime import UTC, datetime, timedelta

import pytest

from auth.domain.errors import NotAuthenticatedError
from auth.domain.model import Principal
from auth.security.token_cache import VerifiedTokenCache
from auth.security.tokens import TokenService
from tests.contract.conftest import new_user
from tests.unit.fakes import make_token_service


class CountingVerifier:
    """A real TokenService's verify that counts its calls."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self.calls = 0

    def __call__(self, token: str) -> Principal:
        self.calls += 1
        return self.tokens.verify(token)


class Clock:
    """A clock the test moves by hand (epoch seconds)."""

    def __init__(self, now: datetime) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now


def issued(tokens: TokenService, now: datetime) -> str:
    """A token for a new user, issued at `now`."""
    return tokens.issue(new_user(), now=now).token


def test_a_token_is_verified_once_while_it_is_unexpired() -> None:
    tokens = make_token_service()
    now = datetime.now(UTC)
    verifier, cache = CountingVerifier(tokens), VerifiedTokenCache(clock=Clock(now))
    token = issued(tokens, now)

    principals = [cache.verify(token, verifier) for _ in range(5)]

    assert verifier.calls == 1
    assert principals == [tokens.verify(token)] * 5


def test_from_its_expiry_on_a_token_goes_back_to_the_verifier() -> None:
    tokens = make_token_service(ttl=timedelta(minutes=1))
    now = datetime.now(UTC)
    clock = Clock(now)
    verifier, cache = CountingVerifier(tokens), VerifiedTokenCache(clock=clock)
    token = issued(tokens, now)
    cache.verify(token, verifier)

    clock.now = int(now.timestamp()) + 59.9
    cache.verify(token, verifier)
    assert verifier.calls == 1

    clock.now = int(now.timestamp()) + 60
    cache.verify(token, verifier)
    assert verifier.calls == 2


def test_a_refused_token_is_not_remembered() -> None:
    tokens = make_token_service()
    now = datetime.now(UTC)
    verifier, cache = CountingVerifier(tokens), VerifiedTokenCache(clock=Clock(now))
    forged = issued(make_token_service(), now)

    for _ in range(3):
        with pytest.raises(NotAuthenticatedError):
            cache.verify(forged, verifier)

    assert verifier.calls == 3
    assert len(cache) == 0


def test_a_token_differing_in_one_character_is_verified_on_its_own() -> None:
    tokens = make_token_service()
    now = datetime.now(UTC)
    verifier, cache = CountingVerifier(tokens), VerifiedTokenCache(clock=Clock(now))
    token = issued(tokens, now)
    cache.verify(token, verifier)
    last = token[-1]
    tampered = token[:-1] + ("A" if last != "A" else "B")

    with pytest.raises(NotAuthenticatedError):
        cache.verify(tampered, verifier)
    assert verifier.calls == 2


def test_when_full_the_oldest_token_is_forgotten_first() -> None:
    tokens = make_token_service()
    now = datetime.now(UTC)
    verifier, cache = CountingVerifier(tokens), VerifiedTokenCache(max_entries=2, clock=Clock(now))
    first, second, third = (issued(tokens, now) for _ in range(3))
    for token in (first, second, third):
        cache.verify(token, verifier)

    cache.verify(third, verifier)
    cache.verify(second, verifier)
    assert verifier.calls == 3
    cache.verify(first, verifier)
    assert verifier.calls == 4
    assert len(cache) == 2


def test_a_principal_from_a_verifier_of_tokens_without_expiry_is_never_remembered() -> None:
    cache = VerifiedTokenCache()
    principal = Principal(new_user().id, "alice", "user")
    calls: list[str] = []

    def opaque(token: str) -> Principal:
        calls.append(token)
        return principal

    assert cache.verify("not-a-jwt", opaque) == principal
    assert cache.verify("not-a-jwt", opaque) == principal
    assert len(calls) == 2
    assert len(cache) == 0
