"""Access tokens: asymmetric JWTs with a `kid`, verifiable by any service from the JWKS."""

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from auth.domain.errors import NotAuthenticatedError
from auth.domain.model import Principal, User
from auth.security.signing_keys import Algorithm, SigningKey, signing_key_from_pem
from auth.settings import AuthSettings

PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey
# Clocks of the issuing and the verifying host may differ a little.
LEEWAY = timedelta(seconds=10)
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud", "jti")


@dataclass(frozen=True)
class IssuedToken:
    """A signed access token and its lifetime in seconds."""

    token: str
    expires_in: int


class TokenService:
    """Issues and verifies access tokens with one private key."""

    def __init__(
        self,
        private_key: SigningKey,
        *,
        algorithm: Algorithm,
        issuer: str,
        audience: str,
        ttl: timedelta,
        previous_public_keys: Sequence[PublicKey] = (),
    ) -> None:
        self._private_key = private_key
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self.public_jwk = _public_jwk(private_key.public_key(), algorithm)
        self.kid: str = self.public_jwk["kid"]
        # The current key and those rotated out: tokens they signed stay valid until expiry.
        self._jwks = [self.public_jwk] + [_public_jwk(k, algorithm) for k in previous_public_keys]
        self._verification_keys: dict[str, PublicKey] = {
            jwk["kid"]: key
            for jwk, key in zip(
                self._jwks, [private_key.public_key(), *previous_public_keys], strict=True
            )
        }

    def issue(
        self, user: User, *, session_id: UUID | None = None, now: datetime | None = None
    ) -> IssuedToken:
        """A signed access token for the user, bound to its session when it has one."""
        issued_at = now or datetime.now(UTC)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user.id),
            "username": user.username,
            "role": user.role,
            # As at issue: a token from before a verification says false until refreshed.
            "email_verified": user.email_verified,
            "iat": issued_at,
            "exp": issued_at + self._ttl,
            "jti": str(uuid.uuid4()),
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        return IssuedToken(token=self.sign(claims), expires_in=int(self._ttl.total_seconds()))

    def sign(self, claims: dict[str, Any]) -> str:
        """`claims` signed with the current key, its `kid` in the header (service tokens too)."""
        return jwt.encode(
            claims, self._private_key, algorithm=self._algorithm, headers={"kid": self.kid}
        )

    def decode(self, token: str, *, audience: str, required: Sequence[str]) -> dict[str, Any]:
        """The claims of a token one of our keys signed for `audience`, checked and unexpired.

        Raises jwt.PyJWTError (or KeyError for a header without a known `kid`) otherwise.
        """
        header = jwt.get_unverified_header(token)
        key = self._verification_keys.get(header.get("kid", ""))
        if key is None:
            raise jwt.InvalidKeyError("the token was signed by an unknown key")
        # Only the configured algorithm: `none` and algorithm-confusion tokens fail here.
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[self._algorithm],
            audience=audience,
            issuer=self._issuer,
            leeway=LEEWAY,
            options={"require": list(required)},
        )
        return claims

    def verify(self, token: str) -> Principal:
        """The principal a token names; NotAuthenticatedError for any token we did not issue."""
        try:
            claims = self.decode(token, audience=self._audience, required=REQUIRED_CLAIMS)
            role = claims["role"]
            if role not in ("user", "admin"):
                raise NotAuthenticatedError("the token names an unknown role")
            session = claims.get("sid")
            return Principal(
                user_id=UUID(claims["sub"]),
                username=claims["username"],
                role=role,
                session_id=UUID(session) if session else None,
            )
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise NotAuthenticatedError(f"invalid token: {exc}") from exc

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set other services verify tokens with."""
        return {"keys": list(self._jwks)}


def token_service(settings: AuthSettings) -> TokenService:
    """The TokenService the settings describe (in development this may generate the key)."""
    return TokenService(
        load_signing_key(settings),
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        previous_public_keys=load_previous_public_keys(settings),
    )


def load_signing_key(settings: AuthSettings) -> SigningKey:
    """The configured private key; in development, a generated one kept in the data dir."""
    if settings.jwt_private_key is not None:
        pem = settings.jwt_private_key.get_secret_value().encode()
    elif settings.jwt_private_key_file is not None:
        pem = settings.jwt_private_key_file.read_bytes()
    else:
        pem = _generated_key(settings.generated_key_file, settings.jwt_algorithm)
    return signing_key_from_pem(pem, settings.jwt_algorithm)


def load_previous_public_keys(settings: AuthSettings) -> list[PublicKey]:
    """The public keys of rotated-out signing keys, from their PEM files."""
    keys: list[PublicKey] = []
    for path in settings.jwt_previous_public_key_files:
        key = serialization.load_pem_public_key(path.read_bytes())
        wanted = ed25519.Ed25519PublicKey if settings.jwt_algorithm == "EdDSA" else rsa.RSAPublicKey
        if not isinstance(key, wanted):
            raise ValueError(f"{path} does not hold a {settings.jwt_algorithm} public key")
        keys.append(key)
    return keys


def generate_private_key_pem(algorithm: Algorithm) -> bytes:
    """A new private key for `algorithm`, as unencrypted PKCS#8 PEM."""
    key: SigningKey = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _generated_key(path: Path, algorithm: Algorithm) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL with mode 0600: never readable by others, not even for an instant, and of two
        # instances starting together exactly one writes the key and both use it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        file.write(generate_private_key_pem(algorithm))
    return path.read_bytes()


def _public_jwk(key: PublicKey, algorithm: Algorithm) -> dict[str, Any]:
    public = jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key, as_dict=True)
    required = {
        name: public[name] for name in sorted(public) if name in {"crv", "e", "kty", "n", "x"}
    }
    # RFC 7638 thumbprint: the same key always gets the same kid, on every instance.
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return {**public, "kid": kid, "alg": algorithm, "use": "sig"}
