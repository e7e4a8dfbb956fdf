"""The checks of an access token that need no key: its compact form, header and claims.

A strict reading of RFC 7515 compact serialisation: three base64url segments separated by dots,
no padding, no characters outside the alphabet, no stray bits in the last character (so one
token has one spelling), and JSON objects in the header and the payload. The claims are
checked as `jwt.decode` checks them with our options. Stricter than PyJWT 2.15 in two
places: it accepts padded segments and NumericDates written as strings; this module does not.
"""

import base64
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from consumers.errors import ConsumerError

# The registered claims every access token of ours carries (`iss`, `aud`, ...).
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti"]

_COMPACT = re.compile(r"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]*)")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# How a segment may end, by its length modulo 4: a last group of 2 characters holds 8 bits
# in 12, of 3 characters 16 bits in 18; the bits left over must be zero.
_CANONICAL_ENDS = {2: frozenset(_ALPHABET[::16]), 3: frozenset(_ALPHABET[::4])}


class TokenRejectedError(ConsumerError):
    """The token is not one the issuer signed for us, or no longer valid; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"token rejected: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class VerifiedClaims:
    """Who a verified access token speaks for."""

    user_id: UUID
    username: str
    role: str
    session_id: UUID | None
    expires_at: datetime


class CompactToken(NamedTuple):
    """The three segments of a compact JWS, still encoded, and the bytes its signature covers."""

    header: str
    payload: str
    signature: str
    signing_input: bytes


def split_token(token: str) -> CompactToken:
    """The segments of `token`; TokenRejectedError unless it is exactly three base64url ones."""
    match = _COMPACT.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise TokenRejectedError("the token is not a JWT (three base64url segments)")
    header, payload, signature = match.groups()
    return CompactToken(header, payload, signature, token[: match.end(2)].encode("ascii"))


def decode_segment(segment: str, name: str) -> bytes:
    """The bytes of one base64url segment (of the alphabet alone, as split_token ensures)."""
    tail = len(segment) % 4
    if tail == 1 or (tail and segment[-1] not in _CANONICAL_ENDS[tail]):
        raise TokenRejectedError(f"the token's {name} is not canonical base64url")
    return base64.urlsafe_b64decode(segment + "=" * (4 - tail if tail else 0))


def json_object(segment: str, name: str) -> dict[str, Any]:
    """The JSON object one segment encodes; TokenRejectedError for anything else."""
    try:
        value = json.loads(decode_segment(segment, name))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise TokenRejectedError(f"the token's {name} is not JSON") from exc
    if not isinstance(value, dict):
        raise TokenRejectedError(f"the token's {name} is not a JSON object")
    return value


def checked_claims(
    claims: dict[str, Any], *, issuer: str, audience: str, leeway: float, now: float
) -> VerifiedClaims:
    """The claims of a token whose signature verified, if they hold now; else TokenRejectedError.

    The order of the checks is jwt.decode's: presence, iat, nbf, exp, issuer, audience.
    """
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise TokenRejectedError(f"the token lacks the {name!r} claim")
    if _numeric_date(claims, "iat") > now + leeway:
        raise TokenRejectedError("the token is not yet valid (iat)")
    if "nbf" in claims and _numeric_date(claims, "nbf") > now + leeway:
        raise TokenRejectedError("the token is not yet valid (nbf)")
    if _numeric_date(claims, "exp") <= now - leeway:
        raise TokenRejectedError("the token has expired")
    if claims["iss"] != issuer:
        raise TokenRejectedError("the token comes from another issuer")
    audiences = claims["aud"]
    if not audiences:
        raise TokenRejectedError("the token lacks the 'aud' claim")
    if isinstance(audiences, str):
        audiences = [audiences]
    well_formed = isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)
    if not well_formed or audience not in audiences:
        raise TokenRejectedError("the token is meant for another audience")
    return _principal(claims)


def _numeric_date(claims: dict[str, Any], name: str) -> int:
    """A NumericDate claim as whole seconds, as jwt.decode compares it."""
    value = claims[name]
    # A JSON number: bool is an int to Python, and json.loads lets NaN and Infinity through.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"{name} must be a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise _malformed(f"{name} must be a finite number")
    return int(value)


def _principal(claims: dict[str, Any]) -> VerifiedClaims:
    """The verified claims the downstream service acts on, each of its type."""
    for name in ("username", "role"):
        if claims.get(name) is None:
            raise TokenRejectedError(f"the token lacks the {name!r} claim")
    username, role, session = claims["username"], claims["role"], claims.get("sid")
    if not (isinstance(username, str) and username and isinstance(role, str) and role):
        raise _malformed("username and role must be non-empty strings")
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise _malformed("sub and jti must be strings")
    if session is not None and not isinstance(session, str):
        raise _malformed("sid must be a string")
    try:
        return VerifiedClaims(
            user_id=UUID(claims["sub"]),
            username=username,
            role=role,
            session_id=UUID(session) if session is not None else None,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (ValueError, OverflowError, OSError) as exc:  # a bad UUID, or exp past year 9999
        raise _malformed(str(exc)) from exc


def _malformed(problem: str) -> TokenRejectedError:
    return TokenRejectedError(f"the token's claims are malformed: {problem}")
