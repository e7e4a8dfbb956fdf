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

    def __init__(self) -> None:
        super().__init__("invalid username or password")


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
