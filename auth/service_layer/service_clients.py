"""Use cases of service clients: creating, listing and revoking them, and their tokens.

A service client gets an access token with the OAuth 2.0 client-credentials grant (RFC 6749
4.4), and reads the event feed with it. The feed checks on every request that the client is
still active, so revoking a client shuts it out at once, not when its token expires.
"""

import hmac
from dataclasses import dataclass
from typing import Protocol

from auth.adapters.secrets import digest
from auth.adapters.service_clients import ServiceClientRepository
from auth.domain.errors import (
    InvalidClientError,
    NotAuthenticatedError,
    PermissionDeniedError,
    ServiceClientNotFoundError,
)
from auth.domain.service_clients import (
    EVENTS_READ,
    ServiceClient,
    ServicePrincipal,
    check_service_name,
)
from auth.security.audit import AuditLog
from auth.security.tokens import IssuedToken
from auth.service_layer.context import AccessTokens, now

# Compared against when the client id is unknown, so that both failures cost the same.
_NO_DIGEST = digest("")


class ServiceTokens(Protocol):
    """Issues and verifies service tokens (auth.security.service_tokens.ServiceTokenService)."""

    def issue(self, client: ServiceClient) -> IssuedToken:
        """A signed access token for the client, with the client's scopes."""
        ...

    def verify(self, token: str) -> ServicePrincipal:
        """The service a token names; NotAuthenticatedError for any other token."""
        ...


@dataclass(frozen=True)
class ServiceClients:
    """What administering service clients needs (`userbus service ...`)."""

    repository: ServiceClientRepository
    audit: AuditLog


@dataclass(frozen=True)
class ServiceAccess(ServiceClients):
    """What issuing service tokens and admitting feed readers needs, on top."""

    tokens: ServiceTokens
    # Users' tokens, only to tell a user's token (403) from a forged one (401).
    user_tokens: AccessTokens


async def create_service_client(
    ctx: ServiceClients, *, name: str, scope: str = EVENTS_READ
) -> tuple[ServiceClient, str]:
    """A new client and its secret: the secret is shown to the caller once and never kept."""
    check_service_name(name)
    client, secret = await ctx.repository.add(name, scope=scope, now=now())
    ctx.audit.record("service_client_created", name=name, client_id=client.client_id, scope=scope)
    return client, secret


async def list_service_clients(ctx: ServiceClients) -> list[ServiceClient]:
    """Every client, revoked ones too, oldest first."""
    return await ctx.repository.list()


async def revoke_service_client(ctx: ServiceClients, *, name: str) -> ServiceClient:
    """Revoke the active client of this name: its tokens stop working at once."""
    client = await ctx.repository.revoke(name, now=now())
    if client is None:
        raise ServiceClientNotFoundError(name)
    ctx.audit.record("service_client_revoked", name=client.name, client_id=client.client_id)
    return client


async def issue_service_token(
    ctx: ServiceAccess, *, client_id: str, client_secret: str, address: str | None
) -> tuple[IssuedToken, str]:
    """A service token for valid client credentials, and its scope; else InvalidClientError."""
    found = await ctx.repository.find(client_id)
    client, stored = found if found is not None else (None, _NO_DIGEST)
    matches = hmac.compare_digest(digest(client_secret), stored)
    if client is None or not matches or not client.active:
        reason = (
            "unknown_client" if client is None else "wrong_secret" if not matches else "revoked"
        )
        ctx.audit.record(
            "service_token_refused", client_id=client_id, address=address, reason=reason
        )
        raise InvalidClientError(reason)
    ctx.audit.record("service_token_issued", name=client.name, client_id=client_id, address=address)
    return ctx.tokens.issue(client), client.scope


async def admit_service(ctx: ServiceAccess, *, token: str | None, scope: str) -> ServicePrincipal:
    """The service behind a bearer token that grants `scope`, whose client is still active.

    No token or a token we did not sign: NotAuthenticatedError (401). A user's token, even
    an admin's, or a service token without the scope: PermissionDeniedError (403).
    """
    if token is None:
        raise NotAuthenticatedError("a service token is required (client credentials)")
    try:
        principal = ctx.tokens.verify(token)
    except NotAuthenticatedError:
        if _is_user_token(ctx, token):
            raise PermissionDeniedError(
                "users' tokens cannot read the event feed: use a service client's token"
            ) from None
        raise
    if scope not in principal.scopes:
        raise PermissionDeniedError(f"the service token does not grant {scope!r}")
    found = await ctx.repository.find(principal.client_id)
    if found is None or not found[0].active:
        raise NotAuthenticatedError("the service client was revoked")
    return principal


def _is_user_token(ctx: ServiceAccess, token: str) -> bool:
    try:
        ctx.user_tokens.verify(token)
    except NotAuthenticatedError:
        return False
    return True
