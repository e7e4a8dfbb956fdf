"""Domain errors of sessions and the second factor (api/errors.py maps them to HTTP)."""

from auth.domain.errors import AuthError


class SessionNotFoundError(AuthError):
    """No live session with this id belongs to the user (someone else's is not told apart)."""

    code = "session_not_found"

    def __init__(self) -> None:
        super().__init__("no live session of this user has that id")


class InvalidMfaChallengeError(AuthError):
    """The MFA challenge is unknown, expired or already used: log in again."""

    code = "invalid_mfa_challenge"

    def __init__(self) -> None:
        super().__init__("the MFA challenge is invalid or expired; log in again")


class InvalidMfaCodeError(AuthError):
    """The TOTP or recovery code is wrong, used already, or replayed within its window."""

    code = "invalid_mfa_code"

    def __init__(self) -> None:
        super().__init__("the code is wrong or was used already")


class MfaAlreadyEnabledError(AuthError):
    """TOTP is on already: turn it off first to enrol a new authenticator."""

    code = "mfa_already_enabled"

    def __init__(self) -> None:
        super().__init__("TOTP is already enabled; disable it first to enrol again")


class MfaNotPendingError(AuthError):
    """There is no started enrolment to confirm."""

    code = "mfa_not_pending"

    def __init__(self) -> None:
        super().__init__("no TOTP enrolment is waiting: start one with POST /auth/mfa/totp")


class MfaNotEnabledError(AuthError):
    """The user has no second factor to disable."""

    code = "mfa_not_enabled"

    def __init__(self) -> None:
        super().__init__("TOTP is not enabled for this user")


class MfaRequiredError(AuthError):
    """The account has a second factor, which this way of authenticating cannot carry."""

    code = "mfa_required"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MfaUnavailableError(AuthError):
    """No key to encrypt TOTP secrets is configured (production needs one)."""

    code = "mfa_unavailable"

    def __init__(self) -> None:
        super().__init__("TOTP is unavailable: USERBUS_MFA_ENCRYPTION_KEY is not configured")
