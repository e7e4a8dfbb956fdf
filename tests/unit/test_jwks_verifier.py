"""JwksVerifier: tokens it accepts, forgeries it refuses, and how often it asks for the keys."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from consumers.jwks import JwksUnavailableError, JwksVerifier, TokenRejectedError
from tests.unit.jwks_helpers import (
    AUDIENCE,
    ISSUER,
    JWKS_URL,
    FakeClock,
    FakeJwksServer,
    SigningKey,
    b64url,
    forge,
    make_key,
    make_verifier,
    payload,
    rejection,
)


@pytest.fixture
def key() -> SigningKey:
    return make_key()


@pytest.fixture
def server(key: SigningKey) -> FakeJwksServer:
    return FakeJwksServer(keys=[key])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def http(server: FakeJwksServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as client:
        yield client


@pytest.fixture
def verifier(http: httpx.AsyncClient, clock: FakeClock) -> JwksVerifier:
    return make_verifier(http, clock)


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
async def test_a_token_of_the_issuer_is_verified(algorithm: str, clock: FakeClock) -> None:
    key = make_key(algorithm)
    server = FakeJwksServer(keys=[key])
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        verifier = make_verifier(http, clock)
        token = key.sign(username="bob", role="admin")

        claims = await verifier.verify(token)

    expected = payload(token)
    assert claims.user_id == uuid.UUID(expected["sub"])
    assert (claims.username, claims.role) == ("bob", "admin")
    assert claims.session_id == uuid.UUID(expected["sid"])
    assert claims.expires_at == datetime.fromtimestamp(expected["exp"], UTC)


async def test_a_token_without_a_session_has_no_session_id(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    claims = await verifier.verify(key.sign(sid=None))
    assert claims.session_id is None


async def test_the_key_set_is_fetched_on_first_use_and_then_cached(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    assert server.requests == 0
    for _ in range(5):
        await verifier.verify(key.sign())
        clock.advance(30)
    assert server.requests == 1


async def test_concurrent_first_requests_fetch_the_key_set_once(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer
) -> None:
    await asyncio.gather(*(verifier.verify(key.sign()) for _ in range(20)))
    assert server.requests == 1


async def test_an_unknown_kid_triggers_one_refetch_then_is_rejected(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    await verifier.verify(key.sign())
    clock.advance(60)
    stranger = make_key()

    reason = await rejection(verifier, stranger.sign())

    assert server.requests == 2
    assert stranger.kid in reason
    assert "unknown key" in reason


async def test_refetches_for_unknown_kids_are_rate_limited(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    await verifier.verify(key.sign())
    clock.advance(60)
    forgeries = [make_key().sign() for _ in range(50)]

    results = await asyncio.gather(
        *(verifier.verify(token) for token in forgeries), return_exceptions=True
    )
    clock.advance(5)
    await rejection(verifier, make_key().sign())

    assert all(isinstance(result, TokenRejectedError) for result in results)
    assert server.requests == 2  # the first fetch, and one refetch for all 51 forgeries
    clock.advance(5)
    await rejection(verifier, make_key().sign())
    assert server.requests == 3
    await verifier.verify(key.sign())  # the known key never waits for a fetch
    assert server.requests == 3


async def test_a_rotated_key_is_picked_up_after_a_refetch(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    await verifier.verify(key.sign())
    new_key = make_key()
    server.keys = [new_key, key]  # the issuer rotated: new tokens name the new kid
    clock.advance(10)

    claims = await verifier.verify(new_key.sign(username="carol"))

    assert claims.username == "carol"
    assert server.requests == 2
    await verifier.verify(key.sign())  # tokens of the old key stay valid until they expire


async def test_a_rotation_right_after_a_fetch_is_picked_up_once_the_interval_has_passed(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    await verifier.verify(key.sign())
    new_key = make_key()
    server.keys = [new_key, key]
    token = new_key.sign()

    await rejection(verifier, token)
    clock.advance(10)

    assert (await verifier.verify(token)).username == "alice"
    assert server.requests == 2


async def test_an_expired_cache_is_refetched_and_drops_removed_keys(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    await verifier.verify(key.sign())
    server.keys = [make_key()]  # the old key was retired
    clock.advance(301)

    reason = await rejection(verifier, key.sign())

    assert "unknown key" in reason
    assert server.requests == 2


async def test_the_cached_keys_stay_in_use_while_the_issuer_is_down(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    await verifier.verify(key.sign())
    server.status = 503
    clock.advance(301)

    for _ in range(10):
        await verifier.verify(key.sign())

    assert server.requests == 2  # one failed refresh, not one per token


async def test_without_any_key_set_the_verifier_reports_the_issuer_unavailable(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    server.status = 500
    for _ in range(5):
        with pytest.raises(JwksUnavailableError):
            await verifier.verify(key.sign())
    assert server.requests == 1

    server.status = 200
    clock.advance(10)
    await verifier.verify(key.sign())
    assert server.requests == 2


async def test_a_key_set_with_no_usable_key_counts_as_unavailable(
    clock: FakeClock, key: SigningKey
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        oct_key = {"kty": "oct", "k": "c2VjcmV0", "kid": key.kid, "alg": "HS256"}
        return httpx.Response(200, json={"keys": [oct_key]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        with pytest.raises(JwksUnavailableError):
            await make_verifier(http, clock).verify(key.sign())


async def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer
) -> None:
    # Algorithm confusion: the public key, which anyone can fetch, used as an HMAC secret.
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = payload(key.sign())
    for secret in (public_pem, json.dumps(key.jwk()).encode()):
        token = forge({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims, secret)
        assert "HS256" in await rejection(verifier, token)
    assert server.requests == 0  # refused before any key is looked up


async def test_alg_none_is_rejected(verifier: JwksVerifier, key: SigningKey) -> None:
    token = forge({"alg": "none", "kid": key.kid}, payload(key.sign()))
    assert "none" in await rejection(verifier, token)


async def test_a_token_whose_alg_differs_from_its_keys_alg_is_rejected(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    # An RS256 token naming the kid of the EdDSA key: both algorithms are accepted, but the
    # key decides how it is checked, never the token.
    impostor = SigningKey(make_key("RS256").private, "RS256", kid=key.kid)
    reason = await rejection(verifier, impostor.sign())
    assert "signs with EdDSA, not RS256" in reason


async def test_an_algorithm_not_listed_is_rejected(clock: FakeClock) -> None:
    rsa_key = make_key("RS256")
    server = FakeJwksServer(keys=[rsa_key])
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        verifier = make_verifier(http, clock, algorithms=("EdDSA",))
        assert "RS256" in await rejection(verifier, rsa_key.sign())


@pytest.mark.parametrize("algorithms", [("HS256",), ("EdDSA", "none"), ()])
def test_a_verifier_refuses_symmetric_or_no_algorithms(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        JwksVerifier(JWKS_URL, issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-service"}, "another audience"),
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"exp": datetime.now(UTC) - timedelta(seconds=11)}, "expired"),
        ({"exp": None}, "'exp'"),
        ({"sub": None}, "'sub'"),
        ({"jti": None}, "'jti'"),
        ({"username": None}, "'username'"),
        ({"role": None}, "'role'"),
        ({"sub": "not-a-uuid"}, "malformed"),
        ({"sid": "not-a-uuid"}, "malformed"),
        ({"username": ""}, "malformed"),
    ],
)
async def test_a_token_with_wrong_claims_is_rejected(
    verifier: JwksVerifier, key: SigningKey, overrides: dict[str, Any], reason: str
) -> None:
    assert reason in await rejection(verifier, key.sign(**overrides))


async def test_a_token_expired_within_the_leeway_is_accepted(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    await verifier.verify(key.sign(exp=datetime.now(UTC) - timedelta(seconds=5)))


async def test_a_tampered_token_is_rejected(verifier: JwksVerifier, key: SigningKey) -> None:
    header, _, signature = key.sign().split(".")
    claims = payload(key.sign(role="user")) | {"role": "admin"}
    body = b64url(json.dumps(claims).encode())
    reason = await rejection(verifier, f"{header}.{body}.{signature}")
    assert "signature" in reason


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30."])
async def test_a_token_that_is_not_a_jwt_is_rejected(verifier: JwksVerifier, token: str) -> None:
    await rejection(verifier, token)


@pytest.mark.parametrize("alg", [["EdDSA"], {"EdDSA": 1}, None, 1])
async def test_a_header_whose_alg_is_not_a_string_is_rejected(
    verifier: JwksVerifier, key: SigningKey, alg: Any
) -> None:
    token = forge({"alg": alg, "kid": key.kid}, payload(key.sign()))
    assert "not accepted" in await rejection(verifier, token)


async def test_a_token_without_a_kid_is_rejected(verifier: JwksVerifier, key: SigningKey) -> None:
    token = jwt.encode(payload(key.sign()), key.private, algorithm="EdDSA")
    assert "kid" in await rejection(verifier, token)


async def test_the_verifier_closes_only_the_client_it_made(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    async with make_verifier(http, clock):
        pass
    assert not http.is_closed
