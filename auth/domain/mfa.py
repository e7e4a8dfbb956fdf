"""TOTP (RFC 6238) codes and recovery codes: the second factor's rules, without storage."""

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp

# RFC 6238's defaults, which every authenticator app understands.
STEP_SECONDS = 30
DIGITS = 6
# Codes of one step before and after the current one are accepted: clocks drift, and a user
# types a code that was shown a moment ago (RFC 6238 section 5.2 recommends one step).
WINDOW_STEPS = 1
RECOVERY_CODE_COUNT = 10
# 16 characters of base32: 80 random bits per code, far beyond guessing within any limit.
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_RECOVERY_LENGTH = 16
_TOTP_CODE = re.compile(r"\d{6}")


@dataclass(frozen=True)
class TotpEnrolment:
    """A user's stored TOTP state, the secret decrypted."""

    secret: str
    confirmed: bool
    # The time step of the last accepted code (None before the first): no code of that step
    # or an earlier one is accepted again.
    last_used_step: int | None


def new_totp_secret() -> str:
    """A fresh 160-bit base32 secret (RFC 4226 recommends at least 128 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads (usually from a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def is_totp_code(code: str) -> bool:
    """Whether `code` has the shape of a TOTP code (six digits, spaces ignored)."""
    return _TOTP_CODE.fullmatch(code.replace(" ", "")) is not None


def matching_step(secret: str, code: str, *, now: datetime, after: int | None) -> int | None:
    """The time step within the window whose code is `code` and that is later than `after`.

    None when no such step exists: a wrong code, or one replayed from a step already used.
    """
    code = code.replace(" ", "")
    if not is_totp_code(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = totp.timecode(now)
    found = None
    # Every step of the window is computed, found or not, so timing tells nothing.
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (after is None or step > after):
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """RECOVERY_CODE_COUNT fresh codes, shown as XXXX-XXXX-XXXX-XXXX."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    """The form a recovery code is hashed in: upper case, without dashes or spaces."""
    return code.replace("-", "").replace(" ", "").upper()
