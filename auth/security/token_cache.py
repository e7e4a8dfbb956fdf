"""Bearer tokens this process has already verified, kept until each one expires.

A client sends the same access token with every request for its whole lifetime, and
checking its signature and claims again gives the same answer every time until it expires.
Remembering the answer saves the signature check (the largest part of a bearer request's
own work after the database query; see bench/README.md, "Where /users/me spends its time").

Only the token's *own* validity is remembered. Whether its user, role and session are still
good is asked of the database on every request, so a revocation still counts at once.
"""

import base64
import json
import time
from collections.abc import Callable

from auth.domain.model import Principal

DEFAULT_MAX_ENTRIES = 10_000


def _expiry(token: str) -> float | None:
    """The `exp` claim of a token whose signature was just verified (None if it has none)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


class VerifiedTokenCache:
    """Maps a token's exact text to the principal it proved, until the token's `exp`.

    Only successful verifications are kept, and a token stops being served from here at
    its `exp` (the verifier itself still grants its few seconds of clock leeway). When full,
    the oldest entry goes first. The key is the whole token text, so two different tokens
    can never share an entry.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str, verifier: Callable[[str], Principal]) -> Principal:
        """The principal `token` proves: remembered, or from `verifier` (whose errors pass on)."""
        known = self._verified.get(token)
        if known is not None:
            if self._clock() < known[1]:
                return known[0]
            del self._verified[token]
        principal = verifier(token)
        expires_at = _expiry(token)
        if expires_at is None:
            return principal
        if len(self._verified) >= self._max_entries:
            # Dicts keep insertion order: the first key is the oldest entry.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires_at)
        return principal

    def __len__(self) -> int:
        """How many tokens are remembered."""
        return len(self._verified)
