"""JwksVerifier against forged and malformed tokens, each signed for real where that matters."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from consumers.jwks import MAX_CACHED_HEADERS, JwksVerifier
from tests.unit.jwks_helpers import (
    FakeClock,
    FakeJwksServer,
    SigningKey,
    b64url,
    claims_now,
    make_key,
    make_verifier,
    rejection,
    sign_raw,
)


@pytest.fixture(params=["EdDSA", "RS256"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    return make_key(request.param)


@pytest.fixture
def server(key: SigningKey) -> FakeJwksServer:
    return FakeJwksServer(keys=[key])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def verifier(server: FakeJwksServer, clock: FakeClock) -> AsyncIterator[JwksVerifier]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        yield make_verifier(http, clock)


def with_segment(token: str, index: int, segment: str) -> str:
    """`token` with one of its three segments replaced."""
    parts = token.split(".")
    parts[index] = segment
    return ".".join(parts)


def header_of(key: SigningKey, **fields: Any) -> dict[str, Any]:
    """The header the issuer writes for `key`, with fields added or replaced."""
    return {"alg": key.algorithm, "kid": key.kid, "typ": "JWT", **fields}


async def test_a_tampered_payload_is_refused_though_its_header_is_cached(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    genuine = key.sign(role="user")
    await verifier.verify(genuine)  # the header segment's key decision is now cached
    forged = with_segment(genuine, 1, b64url(json.dumps(claims_now(role="admin")).encode()))
    assert "signature does not verify" in await rejection(verifier, forged)


@pytest.mark.parametrize(
    "fields",
    [{"x": 1}, {"typ": "at+jwt"}, {"jku": "https://evil.example/jwks.json"}],
)
async def test_a_tampered_header_naming_the_same_key_is_refused(
    verifier: JwksVerifier, key: SigningKey, fields: dict[str, Any]
) -> None:
    genuine = key.sign()
    await verifier.verify(genuine)
    forged = with_segment(genuine, 0, b64url(json.dumps(header_of(key, **fields)).encode()))
    assert "signature does not verify" in await rejection(verifier, forged)


async def test_a_signature_by_another_key_under_a_genuine_header_is_refused(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    genuine = key.sign()
    await verifier.verify(genuine)
    impostor = SigningKey(make_key(key.algorithm).private, key.algorithm, kid=key.kid)
    forged = with_segment(genuine, 2, impostor.sign().split(".")[2])
    assert "signature does not verify" in await rejection(verifier, forged)


@pytest.mark.parametrize("length", [0, 1, 10, 600])
async def test_a_signature_of_the_wrong_length_is_refused(
    verifier: JwksVerifier, key: SigningKey, length: int
) -> None:
    forged = with_segment(key.sign(), 2, b64url(b"\x01" * length))
    assert "signature does not verify" in await rejection(verifier, forged)


async def test_the_signature_is_checked_before_any_claim(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    # Expired, from another issuer, not even JSON: a bad signature is all the verifier says.
    for body in (json.dumps(claims_now(exp=1, iss="x")).encode(), b"\xff not json"):
        forged = with_segment(key.sign(), 1, b64url(body))
        assert "signature does not verify" in await rejection(verifier, forged)


async def test_rs256_under_the_kid_of_a_ps256_key_is_refused(clock: FakeClock) -> None:
    # Both algorithms are RSA and both are accepted: the key still decides which one checks.
    rsa = make_key("RS256")
    server = FakeJwksServer(keys=[SigningKey(rsa.private, "PS256", kid=rsa.kid)])
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        verifier = make_verifier(http, clock, algorithms=("RS256", "PS256"))
        assert "signs with PS256, not RS256" in await rejection(verifier, rsa.sign())


@pytest.mark.parametrize(
    "fields", [{"crit": ["exp"]}, {"crit": ["b64"], "b64": False}, {"b64": False}, {"b64": 0}]
)
async def test_a_header_asking_for_a_jws_extension_is_refused(
    verifier: JwksVerifier, key: SigningKey, fields: dict[str, Any]
) -> None:
    token = sign_raw(key, json.dumps(claims_now()).encode(), header_of(key, **fields))
    assert "JWS extension" in await rejection(verifier, token)


async def test_an_explicit_b64_true_is_the_ordinary_form(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    token = sign_raw(key, json.dumps(claims_now()).encode(), header_of(key, b64=True))
    assert (await verifier.verify(token)).username == "alice"


@pytest.mark.parametrize(
    ("header", "problem"), [(b"{", "header is not JSON"), (b"[1]", "not a JSON object")]
)
async def test_a_header_that_is_not_a_json_object_is_refused(
    verifier: JwksVerifier, key: SigningKey, header: bytes, problem: str
) -> None:
    assert problem in await rejection(verifier, with_segment(key.sign(), 0, b64url(header)))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[]", "payload is not a JSON object"),
        (b'"alice"', "payload is not a JSON object"),
        (b"null", "payload is not a JSON object"),
        (b"\xff\xfe", "payload is not JSON"),
        (b"[" * 100_000, "payload is not JSON"),
    ],
)
async def test_a_signed_payload_that_is_not_a_json_object_is_refused(
    verifier: JwksVerifier, key: SigningKey, body: bytes, problem: str
) -> None:
    assert problem in await rejection(verifier, sign_raw(key, body))


@pytest.mark.parametrize("suffix", [".", ".AAAA", "..AAAA.AAAA"])
async def test_a_token_with_extra_segments_is_refused(
    verifier: JwksVerifier, key: SigningKey, suffix: str
) -> None:
    assert "not a JWT" in await rejection(verifier, key.sign() + suffix)


@pytest.mark.parametrize("segment", [0, 1, 2])
async def test_padding_in_a_segment_is_refused(
    verifier: JwksVerifier, key: SigningKey, segment: int
) -> None:
    token = key.sign()
    padded = token.split(".")[segment] + "="
    assert "not a JWT" in await rejection(verifier, with_segment(token, segment, padded))


async def test_a_second_spelling_of_the_signature_is_refused(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    token = key.sign()
    signature = token.split(".")[2]
    # One bit past the end of the data: a lenient decoder reads the same signature.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelt = signature[:-1] + alphabet[alphabet.index(signature[-1]) + 1]
    forged = with_segment(token, 2, respelt)
    assert "not canonical" in await rejection(verifier, forged)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"exp": NaN}', "malformed"),
        (b'{"exp": Infinity}', "malformed"),
        (b'{"exp": "4102444800"}', "malformed"),
        (b'{"nbf": 4102444800}', "not yet valid (nbf)"),
        (b'{"iat": 4102444800}', "not yet valid (iat)"),
        (b'{"exp": 100000000000000000000}', "malformed"),
        (b'{"aud": ["another-service"]}', "another audience"),
    ],
)
async def test_signed_claims_that_do_not_hold_are_refused(
    verifier: JwksVerifier, key: SigningKey, body: bytes, problem: str
) -> None:
    claims = json.dumps(claims_now()).encode()[:-1] + b", " + body[1:]  # a later key wins
    assert problem in await rejection(verifier, sign_raw(key, claims))


async def test_a_token_for_a_list_of_audiences_including_ours_is_accepted(
    verifier: JwksVerifier, key: SigningKey
) -> None:
    token = sign_raw(key, json.dumps(claims_now(aud=["billing", "userbus"])).encode())
    assert (await verifier.verify(token)).username == "alice"


async def test_a_key_dropped_in_a_rotation_is_refused_though_its_header_was_cached(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer, clock: FakeClock
) -> None:
    old_token = key.sign()
    await verifier.verify(old_token)
    new_key = make_key(key.algorithm)
    server.keys = [new_key]  # the old key was withdrawn (say, it leaked)
    clock.advance(10)
    await verifier.verify(new_key.sign())  # an unknown kid: the key set is fetched again

    assert "unknown key" in await rejection(verifier, old_token)
    assert server.requests == 2


async def test_many_distinct_headers_keep_the_key_decisions_bounded(
    verifier: JwksVerifier, key: SigningKey, server: FakeJwksServer
) -> None:
    # Every header is valid and truly signed, so each gets a key decision of its own.
    body = json.dumps(claims_now()).encode()
    for number in range(MAX_CACHED_HEADERS * 2 + 5):
        await verifier.verify(sign_raw(key, body, header_of(key, n=number)))

    assert len(verifier._decisions) <= MAX_CACHED_HEADERS
    assert server.requests == 1
