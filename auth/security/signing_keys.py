"""The signing key's own checks: the algorithm's kind of key, and RSA keys of 2048 bits or more.

Apart from tokens.py so that the settings can check a production key while they are read,
before anything starts (tokens.py itself needs the settings).
"""

from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

Algorithm = Literal["EdDSA", "RS256"]
SigningKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
# RFC 7518 section 3.3: RS256 keys of 2048 bits or larger MUST be used.
MIN_RSA_BITS = 2048


def signing_key_from_pem(pem: bytes, algorithm: Algorithm) -> SigningKey:
    """The unencrypted PEM private key, if it suits `algorithm`; ValueError saying why not."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the JWT private key is no unencrypted PEM private key: {exc}") from None
    wanted = ed25519.Ed25519PrivateKey if algorithm == "EdDSA" else rsa.RSAPrivateKey
    if not isinstance(key, wanted):
        raise ValueError(f"the JWT private key does not fit the algorithm {algorithm}")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"the JWT private key has {key.key_size} bits; RS256 needs {MIN_RSA_BITS} or more"
        )
    return key
