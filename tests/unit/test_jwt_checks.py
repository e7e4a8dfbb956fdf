"""The key-free checks of an access token: its compact form, its segments and its claims."""

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from consumers.jwt_checks import (
    REQUIRED_CLAIMS,
    TokenRejectedError,
    checked_claims,
    decode_segment,
    json_object,
    split_token,
)
from tests.unit.jwks_helpers import AUDIENCE, ISSUER, b64url, claims_now, make_key, sign_raw

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
LEEWAY = 10.0


def reason(call: Any, *args: Any, **kwargs: Any) -> str:
    """The reason `call` gives for rejecting its arguments."""
    with pytest.raises(TokenRejectedError) as caught:
        call(*args, **kwargs)
    return caught.value.reason


def check(claims: dict[str, Any], now: float | None = None) -> Any:
    """checked_claims with the issuer, audience and leeway of the verifier's defaults."""
    at = datetime.now(UTC).timestamp() if now is None else now
    return checked_claims(claims, issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY, now=at)


def test_a_token_splits_into_its_segments_and_signing_input() -> None:
    token = make_key().sign()
    header, payload, signature = token.split(".")

    parts = split_token(token)

    assert (parts.header, parts.payload, parts.signature) == (header, payload, signature)
    assert parts.signing_input == f"{header}.{payload}".encode()


@pytest.mark.parametrize(
    "suffix",
    [".", ".e30", "..", ".e30.e30.e30"],  # four segments, five (the JWE form)
)
def test_a_token_with_extra_segments_is_not_a_jwt(suffix: str) -> None:
    assert "not a JWT" in reason(split_token, make_key().sign() + suffix)


@pytest.mark.parametrize("token", ["", "e30", "e30.e30", "e30e30e30"])
def test_a_token_with_too_few_segments_is_not_a_jwt(token: str) -> None:
    assert "not a JWT" in reason(split_token, token)


@pytest.mark.parametrize("character", ["=", "+", "/", "!", " ", "\n", "é", "\x00", "%"])
@pytest.mark.parametrize("segment", [0, 1, 2])
def test_a_character_outside_base64url_is_refused_in_any_segment(
    character: str, segment: int
) -> None:
    parts = make_key().sign().split(".")
    parts[segment] += character
    assert "not a JWT" in reason(split_token, ".".join(parts))


def test_padding_is_refused_even_where_it_would_be_correct() -> None:
    # RFC 7515 writes segments without padding; PyJWT would accept "==" here.
    header = b64url(b'{"alg":"EdDSA","kid":"k"}')
    assert len(header) % 4 == 2
    assert "not a JWT" in reason(split_token, f"{header}==.e30.AAAA")


def test_a_token_that_is_not_a_string_is_not_a_jwt() -> None:
    token: Any = make_key().sign().encode()
    assert "not a JWT" in reason(split_token, token)


@pytest.mark.parametrize("length", range(13))
def test_every_canonical_segment_decodes_to_its_bytes(length: int) -> None:
    data = os.urandom(length)
    assert decode_segment(b64url(data), "payload") == data


@pytest.mark.parametrize("length", [1, 2, 4, 5])  # last groups of 2 and of 3 characters
def test_a_last_character_with_stray_bits_is_refused(length: int) -> None:
    canonical = b64url(os.urandom(length))
    data = decode_segment(canonical, "signature")
    variants = [canonical[:-1] + c for c in ALPHABET if c != canonical[-1]]
    # Base64 lets 3 (or 15) other spellings decode to the same bytes: one token, one spelling.
    same_bytes = [variant for variant in variants if _lenient(variant) == data]
    assert len(same_bytes) in (3, 15)
    for variant in same_bytes:
        assert "not canonical" in reason(decode_segment, variant, "signature")


def test_a_segment_of_one_character_beyond_a_group_is_refused() -> None:
    assert "not canonical" in reason(decode_segment, "e30AA", "payload")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # too deep for the parser
        (b"[]", "not a JSON object"),
        (b'"claims"', "not a JSON object"),
        (b"1", "not a JSON object"),
        (b"null", "not a JSON object"),
    ],
)
def test_a_segment_that_is_not_a_json_object_is_refused(body: bytes, problem: str) -> None:
    assert problem in reason(json_object, b64url(body), "payload")


def test_claims_that_hold_give_the_principal() -> None:
    claims = claims_now(username="bob", role="admin")
    verified = check(claims)
    assert verified.user_id == uuid.UUID(claims["sub"])
    assert (verified.username, verified.role) == ("bob", "admin")
    assert verified.session_id == uuid.UUID(claims["sid"])
    assert verified.expires_at == datetime.fromtimestamp(claims["exp"], UTC)


@pytest.mark.parametrize("name", [*REQUIRED_CLAIMS, "username", "role"])
def test_a_missing_claim_is_named(name: str) -> None:
    assert f"lacks the {name!r} claim" in reason(check, claims_now(**{name: None}))


def test_times_are_checked_against_now_with_the_leeway() -> None:
    claims = claims_now(iat=1000, nbf=1000, exp=2000)
    check(claims, now=1000 - LEEWAY)  # issued a little in the future: clocks differ
    check(claims, now=2000 + LEEWAY - 0.5)
    assert "not yet valid (iat)" in reason(check, claims, now=1000 - LEEWAY - 1)
    assert "has expired" in reason(check, claims, now=2000 + LEEWAY)
    assert "not yet valid (nbf)" in reason(check, claims_now(iat=900, nbf=1000), now=985)


@pytest.mark.parametrize("name", ["iat", "nbf", "exp"])
@pytest.mark.parametrize("value", ["4102444800", True, [1], {"s": 1}, float("nan"), float("inf")])
def test_a_time_that_is_not_a_finite_json_number_is_malformed(name: str, value: Any) -> None:
    assert "malformed" in reason(check, claims_now(**{name: value}))


def test_a_fractional_expiry_is_accepted() -> None:
    expiry = datetime.now(UTC).timestamp() + 60.5
    assert check(claims_now(exp=expiry)).expires_at == datetime.fromtimestamp(expiry, UTC)


@pytest.mark.parametrize("exp", [10**20, 253402300800])  # past time_t, past year 9999
def test_an_expiry_beyond_the_calendar_is_malformed(exp: int) -> None:
    assert "malformed" in reason(check, claims_now(exp=exp))


@pytest.mark.parametrize("audience", [AUDIENCE, [AUDIENCE], ["other", AUDIENCE]])
def test_a_token_for_our_audience_is_accepted(audience: Any) -> None:
    check(claims_now(aud=audience))


@pytest.mark.parametrize(
    ("audience", "problem"),
    [
        ("other", "another audience"),
        (["other", "more"], "another audience"),
        ({"userbus": 1}, "another audience"),
        ([1, AUDIENCE], "another audience"),
        (7, "another audience"),
        ("", "lacks the 'aud' claim"),
        ([], "lacks the 'aud' claim"),
    ],
)
def test_a_token_for_another_or_no_audience_is_refused(audience: Any, problem: str) -> None:
    assert problem in reason(check, claims_now(aud=audience))


@pytest.mark.parametrize("issuer", ["https://evil.example", ["userbus"], 1])
def test_a_token_of_another_issuer_is_refused(issuer: Any) -> None:
    assert "another issuer" in reason(check, claims_now(iss=issuer))


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": 42},
        {"sub": "not-a-uuid"},
        {"jti": 42},
        {"sid": 42},
        {"sid": "not-a-uuid"},
        {"username": ""},
        {"username": ["alice"]},
        {"role": 1},
    ],
)
def test_claims_of_the_wrong_type_are_malformed(overrides: dict[str, Any]) -> None:
    assert "malformed" in reason(check, claims_now(**overrides))


def _rejected(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except TokenRejectedError:
        return True
    return False


def _lenient(segment: str) -> bytes:
    """What a lenient decoder (PyJWT's base64url_decode) reads from a segment."""
    return jwt.utils.base64url_decode(segment)


# Registered-claim variations on which checked_claims must agree with jwt.decode.
AGREEMENT = [
    {},
    {"exp": -1},
    {"iat": 4102444800},
    {"nbf": 4102444800},
    {"nbf": 0},
    {"aud": [AUDIENCE, "x"]},
    {"aud": ["x"]},
    {"aud": [1, AUDIENCE]},
    {"aud": {"a": 1}},
    {"aud": ""},
    {"iss": "x"},
    {"iss": None},
    {"jti": None},
    {"jti": 5},
    {"sub": 5},
    {"exp": 1.5e9},
]


@pytest.mark.parametrize("overrides", AGREEMENT)
def test_checked_claims_agree_with_jwt_decode(overrides: dict[str, Any]) -> None:
    key = make_key()
    token = sign_raw(key, json.dumps(claims_now(**overrides)).encode())
    try:
        jwt.decode(
            token,
            key.private.public_key(),
            algorithms=[key.algorithm],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": REQUIRED_CLAIMS},
        )
        pyjwt_accepts = True
    except jwt.PyJWTError:
        pyjwt_accepts = False
    we_accept = not _rejected(check, json_object(split_token(token).payload, "payload"))
    assert we_accept == pyjwt_accepts
