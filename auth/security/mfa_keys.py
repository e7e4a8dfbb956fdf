"""The MFA key: it encrypts TOTP secrets and keys the digests of recovery codes.

A TOTP secret must be readable again (each code is computed from it), so it is encrypted,
not hashed: Fernet (AES-128-CBC with HMAC-SHA256), whose key is USERBUS_MFA_ENCRYPTION_KEY.
A stolen table then holds no usable secret without the key, which lives outside the database.

Recovery codes are only ever compared, so they are stored as HMAC-SHA256 digests under a
key derived from the same key (HKDF). A slow hash such as bcrypt is for passwords people
choose; these codes carry 80 random bits each, so no dictionary or brute force gets near one
even with a fast hash, and the key means a leaked table cannot even be tested offline.
Checking ten codes with bcrypt would instead cost ten slow hashes per enrolment.

Rotation: USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS lists keys that still decrypt and still key
digests. New secrets and codes use the current key; a secret under a previous key is
re-encrypted under the current one the next time one of its codes is accepted, and recovery
codes move when the user asks for new ones (POST /auth/mfa/recovery-codes).
"""

import hashlib
import hmac
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from auth.domain.mfa_errors import MfaUnavailableError
from auth.settings import AuthSettings


class MfaKeys:
    """Encrypts and decrypts TOTP secrets; digests recovery codes."""

    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        self._current = Fernet(key)
        self._any = MultiFernet([self._current, *map(Fernet, previous)])
        self._digest_keys = [_digest_key(k) for k in (key, *previous)]

    def encrypt(self, secret: str) -> bytes:
        """The stored form of a TOTP secret, under the current key."""
        return self._current.encrypt(secret.encode("ascii"))

    def decrypt(self, ciphertext: bytes) -> str:
        """The TOTP secret back; MfaUnavailableError if no configured key encrypted it."""
        try:
            return self._any.decrypt(ciphertext).decode("ascii")
        except InvalidToken as exc:
            # A changed key: fail closed rather than let the second factor be skipped.
            raise MfaUnavailableError() from exc

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether the current key encrypted this (else a previous one did, or none)."""
        try:
            self._current.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True

    def rotated(self, ciphertext: bytes) -> bytes:
        """The same secret encrypted under the current key; MfaUnavailableError if no
        configured key reads it."""
        try:
            return self._any.rotate(ciphertext)
        except InvalidToken as exc:
            raise MfaUnavailableError() from exc

    def recovery_digest(self, normalised_code: str) -> bytes:
        """The stored form of a recovery code (normalised by the domain first)."""
        return self.recovery_digests(normalised_code)[0]

    def recovery_digests(self, normalised_code: str) -> list[bytes]:
        """The code's digest under each configured key, the current one first."""
        message = normalised_code.encode("utf-8", "surrogatepass")
        return [hmac.new(k, message, hashlib.sha256).digest() for k in self._digest_keys]


def _digest_key(key: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"userbus recovery codes"
    ).derive(key)


class LazyMfaKeys:
    """The configured MfaKeys, loaded on first use (the saga and create-admin never need it).

    Without USERBUS_MFA_ENCRYPTION_KEY, development and tests generate a key under
    USERBUS_DATA_DIR; production has none, and every MFA operation answers MfaUnavailableError.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._keys: MfaKeys | None = None
        self._lock = threading.Lock()

    def get(self) -> MfaKeys:
        """The keys; MfaUnavailableError if production configured none."""
        if self._keys is None:
            with self._lock:
                if self._keys is None:
                    previous = [
                        k.get_secret_value().encode("ascii")
                        for k in self._settings.mfa_previous_encryption_keys
                    ]
                    self._keys = MfaKeys(_key_of(self._settings), previous)
        return self._keys


def _key_of(settings: AuthSettings) -> bytes:
    if settings.mfa_encryption_key is not None:
        return settings.mfa_encryption_key.get_secret_value().encode("ascii")
    if settings.environment == "production":
        raise MfaUnavailableError()
    return _generated_key(settings.data_dir / "mfa-fernet.key")


def _generated_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # As the development signing key: mode 0600, and of two instances one writes it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as file:
        file.write(Fernet.generate_key())
    return path.read_bytes().strip()
