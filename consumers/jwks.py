"""JwksVerifier: a downstream service verifies access tokens from the published JWKS alone."""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import jwt

from consumers.errors import ConsumerError
from consumers.jwt_checks import (
    REQUIRED_CLAIMS,
    TokenRejectedError,
    VerifiedClaims,
    checked_claims,
    decode_segment,
    json_object,
    split_token,
)

logger = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_CLAIMS",
    "JwksUnavailableError",
    "JwksVerifier",
    "TokenRejectedError",
    "VerifiedClaims",
]

# Only signatures made with a private key: an HMAC "key" taken from a JWKS would be public.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
# Distinct header segments whose key decision is kept (one per key in practice): forged
# headers cannot grow the cache without bound.
MAX_CACHED_HEADERS = 64


class JwksUnavailableError(ConsumerError):
    """No key set could be fetched yet: an outage of the issuer, not a bad token."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"the JWKS at {url} is unavailable: {reason}")
        self.url = url
        self.reason = reason


class JwksVerifier:
    """Verifies access tokens with the keys of a JWKS URL, fetched lazily and cached.

    The key set is fetched on first use and again once it is `cache_seconds` old. A token
    naming an unknown `kid` (the issuer rotated its key) triggers a refetch, but fetches of
    any cause start at most once per `min_refetch_seconds`, so a flood of forged tokens
    cannot turn into a flood of requests to the issuer. When a refetch fails, the keys in
    hand stay in use.

    Each token is read once, strictly (consumers/jwt_checks.py). Which key a header segment
    names, its algorithm checked, is decided once and kept until the key set is fetched
    again, so the per-token work is the signature, the payload and the claims.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("EdDSA", "RS256"),
        cache_seconds: float = 300,
        http: httpx.AsyncClient | None = None,
        min_refetch_seconds: float = 10,
        leeway_seconds: float = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unsafe = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if unsafe or not algorithms:
            raise ValueError(f"only asymmetric algorithms can be verified from a JWKS: {unsafe}")
        self.jwks_url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._cache_seconds = cache_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._leeway = leeway_seconds
        self._clock = clock
        self._http = http
        self._owns_http = http is None
        self._keys: dict[str, jwt.PyJWK] | None = None
        # Header segment -> the key of the current set it names, its algorithm checked.
        self._decisions: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> VerifiedClaims:
        """The claims of a valid token; TokenRejectedError (with a reason) for any other."""
        parts = split_token(token)
        key = self._decisions.get(parts.header)
        if key is None or self._clock() - self._fetched_at >= self._cache_seconds:
            key = await self._decide(parts.header)
        signature = decode_segment(parts.signature, "signature")
        try:
            valid = key.Algorithm.verify(parts.signing_input, key.key, signature)
        except (ValueError, TypeError):  # a signature of the wrong shape for the key
            valid = False
        if not valid:
            raise TokenRejectedError("the signature does not verify")
        # Only now is the payload read: nothing in it is trusted before the signature.
        claims = json_object(parts.payload, "payload")
        return checked_claims(
            claims,
            issuer=self._issuer,
            audience=self._audience,
            leeway=self._leeway,
            now=time.time(),
        )

    async def _decide(self, header_segment: str) -> jwt.PyJWK:
        """The key a header segment names, checked against the header's algorithm, and cached.

        Every token of one key has the same header segment, so this runs once per key, and
        again once the key set is fetched anew or stale, not once per token.
        """
        header = json_object(header_segment, "header")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenRejectedError(f"the algorithm {alg!r} is not accepted")
        if not isinstance(kid, str):
            raise TokenRejectedError("the token names no signing key (kid)")
        # No JWS extension is understood here (RFC 7515 4.1.11), nor an unencoded payload.
        if "crit" in header or header.get("b64", True) is not True:
            raise TokenRejectedError("the token asks for a JWS extension (crit, b64)")
        key = await self._key(kid)
        # The key fixes its algorithm: a token cannot choose to be checked another way.
        if key.algorithm_name != alg:
            raise TokenRejectedError(f"the key {kid!r} signs with {key.algorithm_name}, not {alg}")
        if len(self._decisions) >= MAX_CACHED_HEADERS:
            self._decisions.clear()
        self._decisions[header_segment] = key
        return key

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier made it (a given one belongs to the caller)."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is None or self._clock() - self._fetched_at >= self._cache_seconds:
            keys = await self._refresh()
        key = keys.get(kid)
        if key is None:
            # Perhaps a rotation: the issuer signs with a key we have not fetched yet.
            key = (await self._refresh(wanted=kid)).get(kid)
        if key is None:
            raise TokenRejectedError(f"the token was signed by an unknown key {kid!r}")
        return key

    async def _refresh(self, *, wanted: str | None = None) -> dict[str, jwt.PyJWK]:
        """The key set, fetched again unless that cannot help or a fetch started too recently."""
        async with self._lock:
            now = self._clock()
            keys = self._keys
            # Another task may have fetched while this one waited for the lock.
            if (
                keys is not None
                and now - self._fetched_at < self._cache_seconds
                and (wanted is None or wanted in keys)
            ):
                return keys
            # Failed fetches count too: an issuer that is down is not asked on every request.
            if self._attempted_at is not None and (
                now - self._attempted_at < self._min_refetch_seconds
            ):
                return self._keys_or_raise("the last fetch failed; retrying later")
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, TypeError, jwt.PyJWTError) as exc:
                logger.warning("fetching the JWKS at %s failed: %s", self.jwks_url, exc)
                return self._keys_or_raise(str(exc))
            self._keys, self._fetched_at = keys, self._clock()
            self._decisions.clear()  # they name keys of the old set
            return keys

    def _keys_or_raise(self, reason: str) -> dict[str, jwt.PyJWK]:
        if self._keys is None:
            raise JwksUnavailableError(self.jwks_url, reason)
        return self._keys

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5.0)
        response = await self._http.get(self.jwks_url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document: Any = response.json()
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        keys: dict[str, jwt.PyJWK] = {}
        for key in jwt.PyJWKSet.from_dict(document):
            usable = key.algorithm_name in self._algorithms and key.public_key_use in (None, "sig")
            if usable and key.key_id and key.key_id not in keys:
                keys[key.key_id] = key
        if not keys:
            raise ValueError("the JWKS holds no signing key for the accepted algorithms")
        return keys
