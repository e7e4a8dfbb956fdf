"""Service access tokens: short-lived JWTs for service clients, good only at the event feed.

They are signed with the same key as users' tokens (so the JWKS stays one key set) but carry
their own audience (`AuthSettings.feed_audience`). A user route, and any downstream service
verifying users' tokens from the JWKS, checks the users' audience and so refuses them; the
feed checks this audience and so refuses users' tokens. The claims follow RFC 9068: `sub` and
`client_id` are the client id, `scope` the granted scopes; `role` is "service".
"""

import uuid
from datetime import UTC, datetime, timedelta

import jwt

from auth.domain.errors import NotAuthenticatedError
from auth.domain.service_clients import ServiceClient, ServicePrincipal
from auth.security.tokens import REQUIRED_CLAIMS, IssuedToken, TokenService

SERVICE_ROLE = "service"


class ServiceTokenService:
    """Issues and verifies service tokens with a TokenService's keys."""

    def __init__(self, keys: TokenService, *, issuer: str, audience: str, ttl: timedelta) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl

    def issue(self, client: ServiceClient, *, now: datetime | None = None) -> IssuedToken:
        """A signed access token for the client, with the client's scopes."""
        issued_at = now or datetime.now(UTC)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": client.client_id,
            "client_id": client.client_id,
            "name": client.name,
            "scope": client.scope,
            "role": SERVICE_ROLE,
            "iat": issued_at,
            "exp": issued_at + self._ttl,
            "jti": str(uuid.uuid4()),
        }
        return IssuedToken(self._keys.sign(claims), expires_in=int(self._ttl.total_seconds()))

    def verify(self, token: str) -> ServicePrincipal:
        """The service a token names; NotAuthenticatedError for any other token."""
        try:
            claims = self._keys.decode(
                token, audience=self._audience, required=(*REQUIRED_CLAIMS, "scope", "role")
            )
            if claims["role"] != SERVICE_ROLE or claims.get("client_id") != claims["sub"]:
                raise NotAuthenticatedError("the token is not a service token")
            scope, name = claims["scope"], claims.get("name", "")
            if not isinstance(scope, str) or not isinstance(name, str):
                raise NotAuthenticatedError("the token's scope is malformed")
            return ServicePrincipal(
                client_id=claims["sub"], name=name, scopes=frozenset(scope.split())
            )
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise NotAuthenticatedError(f"invalid token: {exc}") from exc
