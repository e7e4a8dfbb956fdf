"""Domain errors: they carry data, never HTTP status codes (api/errors.py maps them)."""


class AuthError(Exception):
    """Base class of the auth service's domain errors."""

    code = "auth_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsernameTakenError(AuthError):
    """Another account already uses this username (case-insensitive)."""

    code = "username_taken"

    def __init__(self, username: str) -> None:
        super().__init__(f"the username {username!r} is already taken")
        self.username = username


class EmailTakenError(AuthError):
    """Another account already uses this email address (case-insensitive)."""

    code = "email_taken"

    def __init__(self, email: str) -> None:
        super().__init__("the email address is already registered")
        self.email = email


class InvalidCredentialsError(AuthError):
    """Unknown user or wrong password: deliberately one error for both."""

    code = "invalid_credentials"

    def __init__(self, reason: str = "invalid") -> None:
        super().__init__("invalid username or password")
        # Why, for the audit log only: the client always gets the one message above.
        self.reason = reason


class NotAuthenticatedError(AuthError):
    """No valid bearer token came with a request that needs one."""

    code = "not_authenticated"


class PermissionDeniedError(AuthError):
    """The caller is authenticated but may not do this."""

    code = "permission_denied"

    def __init__(self, message: str = "you may not do this") -> None:
        super().__init__(message)


class ConcurrentUpdateError(AuthError):
    """The user changed between reading and writing; the caller may retry."""

    code = "concurrent_update"

    def __init__(self) -> None:
        super().__init__("the user was changed by another request; try again")


class UserNotFoundError(AuthError):
    """No such user (only ever told to admins; others get PermissionDeniedError)."""

    code = "user_not_found"

    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username!r}")
        self.username = username


USERNAME_RULE = "the username must be 3-32 characters of letters, digits, _ . -"


class InvalidFieldError(AuthError):
    """A value for a new account or password breaks a domain rule; `field` names its field."""

    code = "invalid_field"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class WeakPasswordError(InvalidFieldError):
    """A new password breaks the password policy; `field` names the request field."""

    code = "weak_password"

    def __init__(self, reason: str, field: str = "password") -> None:
        super().__init__(reason, field)


class InvalidUsernameError(InvalidFieldError):
    """A new account's username breaks the username rule (auth.domain.model.USERNAME_PATTERN)."""

    code = "invalid_username"

    def __init__(self, username: str) -> None:
        super().__init__(USERNAME_RULE, "username")
        self.username = username


class InvalidRefreshTokenError(AuthError):
    """The refresh token is unknown, expired, revoked, or its user cannot log in."""

    code = "invalid_refresh_token"

    def __init__(self) -> None:
        super().__init__("the refresh token is not valid")


class RefreshTokenReusedError(InvalidRefreshTokenError):
    """A refresh token was presented again after it was rotated: its session is revoked."""

    code = "refresh_token_reused"


class InvalidResetTokenError(AuthError):
    """The password reset token is unknown, used or expired."""

    code = "invalid_reset_token"

    def __init__(self) -> None:
        super().__init__("the password reset token is invalid, used or expired")


class TooManyAttemptsError(AuthError):
    """Too many failed logins for this username or address; try again after `retry_after` s."""

    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts; try again in {retry_after} seconds")
        self.retry_after = retry_after


class LastAdminError(AuthError):
    """The change would leave no active admin."""

    code = "last_admin"

    def __init__(self) -> None:
        super().__init__("this would leave no active admin")


class InvalidCursorError(AuthError):
    """A pagination cursor that this API did not hand out."""

    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__("the cursor is not valid")


class RegistrationPendingError(AuthError):
    """Right password, but the account waits for its profile: it cannot log in yet.

    Only said after the password matched, so it tells nothing to someone guessing.
    """

    code = "registration_pending"

    def __init__(self, username: str) -> None:
        super().__init__("the registration is not complete yet; try again in a moment")
        self.username = username


class InvalidClientError(AuthError):
    """Unknown client id, wrong secret or revoked client: one error for all (RFC 6749 5.2)."""

    code = "invalid_client"

    def __init__(self, reason: str = "invalid") -> None:
        super().__init__("invalid client credentials")
        # Why, for the audit log only.
        self.reason = reason


class ServiceNameTakenError(AuthError):
    """A service client that is not revoked already has this name (case-insensitive)."""

    code = "service_name_taken"

    def __init__(self, name: str) -> None:
        super().__init__(f"a service client named {name!r} already exists")
        self.name = name


class ServiceClientNotFoundError(AuthError):
    """No service client that is not revoked has this name."""

    code = "service_client_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no active service client named {name!r}")
        self.name = name


class InvalidServiceNameError(InvalidFieldError):
    """A service client's name breaks SERVICE_NAME_RULE."""

    code = "invalid_service_name"

    def __init__(self, name: str) -> None:
        super().__init__("a service name is 1-64 characters of letters, digits, _ . -", "name")
        self.name = name


class EmailNotVerifiedError(AuthError):
    """Right password, but the account's email is not verified and the deployment requires it.

    Only said after the password matched, so it tells nothing to someone guessing.
    """

    code = "email_not_verified"

    def __init__(self, username: str) -> None:
        super().__init__("verify your email address first; POST /auth/verify-email/request")
        self.username = username


class InvalidVerificationTokenError(AuthError):
    """The email verification token is unknown, used, expired, or for an older address."""

    code = "invalid_verification_token"

    def __init__(self) -> None:
        super().__init__("the verification token is invalid, used or expired")


class MailLimitReachedError(TooManyAttemptsError):
    """Too many mails or registrations for this address or email; wait `retry_after` s."""

    code = "too_many_requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.message = f"too many requests; try again in {retry_after} seconds"
        self.args = (self.message,)
