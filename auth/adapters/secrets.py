"""Opaque bearer secrets (refresh and reset tokens): random values stored only as digests."""

import hashlib
import secrets


def new_secret() -> tuple[str, bytes]:
    """A fresh 256-bit token for the client, and the digest to store instead of it."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> bytes:
    """The stored form of a token: SHA-256 suffices for 256-bit random values (no guessing)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
