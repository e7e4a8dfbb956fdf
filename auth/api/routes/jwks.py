"""/.well-known/jwks.json: the public keys other services verify access tokens with."""

from typing import Any

from fastapi import APIRouter, Response

from auth.api.deps import ServicesDep

router = APIRouter(tags=["auth"])


@router.get("/.well-known/jwks.json")
async def jwks(services: ServicesDep, response: Response) -> dict[str, Any]:
    """The JSON Web Key Set: the current signing key and those still valid after a rotation."""
    # Verifiers may cache it briefly; a rotation publishes the new key before it signs.
    response.headers["Cache-Control"] = "public, max-age=300"
    return services.auth.tokens.jwks()
