"""JwksVerifier: a downstream service verifies access tokens from the published JWKS alone."""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import httpx
import jwt

from consumers.errors import ConsumerError

logger = logging.getLogger(__name__)

# Only signatures made with a private key: an HMAC "key" taken from a JWKS would be public.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti"]


class TokenRejectedError(ConsumerError):
    """The token is not one the issuer signed for us, or no longer valid; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"token rejected: {reason}")
        self.reason = reason


class JwksUnavailableError(ConsumerError):
    """No key set could be fetched yet: an outage of the issuer, not a bad token."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"the JWKS at {url} is unavailable: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class VerifiedClaims:
    """Who a verified access token speaks for."""

    user_id: UUID
    username: str
    role: str
    session_id: UUID | None
    expires_at: datetime


class JwksVerifier:
    """Verifies access tokens with the keys of a JWKS URL, fetched lazily and cached.

    The key set is fetched on first use and again once it is `cache_seconds` old. A token
    naming an unknown `kid` (the issuer rotated its key) triggers a refetch, but fetches of
    any cause start at most once per `min_refetch_seconds`, so a flood of forged tokens
    cannot turn into a flood of requests to the issuer. When a refetch fails, the keys in
    hand stay in use.
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
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> VerifiedClaims:
        """The claims of a valid token; TokenRejectedError (with a reason) for any other."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejectedError("the token is not a JWT") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenRejectedError(f"the algorithm {alg!r} is not accepted")
        if not isinstance(kid, str):
            raise TokenRejectedError("the token names no signing key (kid)")
        key = await self._key(kid)
        # The key fixes its algorithm: a token cannot choose to be checked another way.
        if key.algorithm_name != alg:
            raise TokenRejectedError(f"the key {kid!r} signs with {key.algorithm_name}, not {alg}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejectedError("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejectedError("the token is meant for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejectedError("the token comes from another issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejectedError(f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejectedError("the signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejectedError(f"invalid token: {exc}") from exc
        return _claims(claims)

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


def _claims(claims: dict[str, Any]) -> VerifiedClaims:
    try:
        username, role, session = claims["username"], claims["role"], claims.get("sid")
        if not (isinstance(username, str) and username and isinstance(role, str) and role):
            raise ValueError("username and role must be non-empty strings")
        return VerifiedClaims(
            user_id=UUID(claims["sub"]),
            username=username,
            role=role,
            session_id=UUID(session) if session is not None else None,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except KeyError as exc:
        raise TokenRejectedError(f"the token lacks the {exc.args[0]!r} claim") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise TokenRejectedError(f"the token's claims are malformed: {exc}") from exc
