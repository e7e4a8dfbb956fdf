"""Test doubles and token makers for the JwksVerifier tests: an issuer's keys and endpoint."""

import base64
import functools
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from consumers.jwks import JwksVerifier, TokenRejectedError

JWKS_URL = "https://auth.test/.well-known/jwks.json"
ISSUER = "userbus"
AUDIENCE = "userbus"
PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass
class SigningKey:
    """A private key, its algorithm and its kid, as the issuer holds it."""

    private: PrivateKey
    algorithm: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def jwk(self) -> dict[str, Any]:
        """The public JWK the issuer publishes for it."""
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, **overrides: Any) -> str:
        """A token as the auth service issues it, with claims replaced or removed (None)."""
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "username": "alice",
            "role": "user",
            "iat": now,
            "exp": now + timedelta(minutes=15),
            "jti": str(uuid.uuid4()),
            "sid": str(uuid.uuid4()),
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


@functools.cache
def rsa_private_key() -> rsa.RSAPrivateKey:
    """One RSA key for the module: they are slow to make."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_key(algorithm: str = "EdDSA") -> SigningKey:
    """A signing key with a kid of its own (new for EdDSA, the module's one for RS256)."""
    if algorithm == "EdDSA":
        return SigningKey(ed25519.Ed25519PrivateKey.generate(), algorithm)
    return SigningKey(rsa_private_key(), algorithm)


@dataclass
class FakeJwksServer:
    """The issuer's JWKS endpoint: serves `keys`, counts requests, fails on demand."""

    keys: list[SigningKey]
    requests: int = 0
    status: int = 200

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one GET of the key set."""
        assert str(request.url) == JWKS_URL
        self.requests += 1
        if self.status != 200:
            return httpx.Response(self.status, text="unavailable")
        return httpx.Response(200, json={"keys": [key.jwk() for key in self.keys]})


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        self.now += seconds


def make_verifier(http: httpx.AsyncClient, clock: FakeClock, **options: Any) -> JwksVerifier:
    """A verifier of the fake issuer's tokens: 300 s cache, one refetch per 10 s at most."""
    return JwksVerifier(
        JWKS_URL, issuer=ISSUER, audience=AUDIENCE, http=http, clock=clock, **options
    )


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes = b"") -> str:
    """A token with any header, HMAC-SHA256-signed with `secret` (empty for alg none)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{b64url(signature)}"


def sign_raw(key: SigningKey, body: bytes, header: dict[str, Any] | None = None) -> str:
    """A token whose payload segment encodes `body` as given (any bytes), truly signed by `key`.

    The header defaults to the issuer's own; the signature is right, so what a test sees
    rejected is the header or the payload, never the signature.
    """
    header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"} if header is None else header
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(body)}"
    signature = jwt.get_algorithm_by_name(key.algorithm).sign(signing_input.encode(), key.private)
    return f"{signing_input}.{b64url(signature)}"


def claims_now(**overrides: Any) -> dict[str, Any]:
    """Valid claims (NumericDates as integers) with some replaced or removed (None)."""
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "username": "alice",
        "role": "user",
        "iat": now,
        "exp": now + 900,
        "jti": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def payload(token: str) -> dict[str, Any]:
    """The claims of a token, unverified."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def rejection(verifier: JwksVerifier, token: str) -> str:
    """The reason the verifier gives for refusing `token`."""
    with pytest.raises(TokenRejectedError) as caught:
        await verifier.verify(token)
    return caught.value.reason
