"""Request and response bodies of the HTTP API."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from auth.domain.model import USERNAME_PATTERN, Role, SettableStatus, Status, User


def no_nul(value: str) -> str:
    """Refuse NUL characters: no name, password or token has one, and PostgreSQL text cannot."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# The validator gives the message; the pattern puts the rule in the OpenAPI document.
NoNul = AfterValidator(no_nul)
NUL_FREE = r"^[^\x00]*$"

Username = Annotated[str, Field(pattern=USERNAME_PATTERN, examples=["alice"])]
# Bounded here, judged by the password policy in the use case (it needs the username and
# email, and answers 422 `weak_password` naming the field).
NewPassword = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        examples=["correct horse battery staple"],
        json_schema_extra={"pattern": NUL_FREE},
    ),
    NoNul,
]
# Presented passwords are only bounded, never judged: a wrong one is a 401, not a 422.
GivenPassword = Annotated[
    str, Field(min_length=1, max_length=1024, json_schema_extra={"pattern": NUL_FREE}), NoNul
]
Login = Annotated[
    str,
    Field(
        min_length=1,
        max_length=320,
        description="username or email",
        json_schema_extra={"pattern": NUL_FREE},
    ),
    NoNul,
]
DisplayName = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": NUL_FREE}), NoNul
]
OpaqueToken = Annotated[
    str, Field(min_length=1, max_length=512, json_schema_extra={"pattern": NUL_FREE}), NoNul
]
# A username in a path: any name may be asked for (a 403 or 404 tells the rest).
UsernameParam = Annotated[str, Path(min_length=1, max_length=320, pattern=NUL_FREE), NoNul]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Request):
    """Registration of a new account (`role` only with an admin's token)."""

    username: Username
    email: EmailStr
    password: NewPassword
    display_name: DisplayName | None = None
    role: Role = "user"


class UserUpdate(_Request):
    """Fields to change; absent fields stay. `display_name: null` clears it.

    `role` and `status` only with an admin's token.
    """

    email: EmailStr | None = None
    display_name: DisplayName | None = None
    role: Role | None = None
    status: SettableStatus | None = None


class UserOut(BaseModel):
    """A user as the API shows it: never the password hash."""

    id: UUID
    username: str
    email: str
    display_name: str | None
    role: Role
    status: Status
    email_verified: bool = Field(description="the address was proven by a mailed token")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> "UserOut":
        """The public view of a user."""
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            display_name=user.display_name,
            role=user.role,
            status=user.status,
            email_verified=user.email_verified,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class UserPage(BaseModel):
    """A page of users; pass `next_cursor` back as `cursor` for the next one."""

    items: list[UserOut]
    next_cursor: str | None


# A client id or secret as a form field (Swagger UI may send an empty one with the password
# grant; an empty one never matches a client).
ClientField = Annotated[str, Field(max_length=512, json_schema_extra={"pattern": NUL_FREE}), NoNul]


class TokenForm(BaseModel):
    """The token endpoint's form: the password grant (Swagger's Authorize sends it), or the
    client-credentials grant (RFC 6749 4.4), whose credentials come as HTTP Basic or here."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "anyOf": [
                {"required": ["username", "password"],
                 "properties": {"grant_type": {"enum": ["password"]}}},
                {"required": ["grant_type"],
                 "properties": {"grant_type": {"enum": ["client_credentials"]}}},
            ]
        },
    )  # fmt: skip

    grant_type: Literal["password", "client_credentials"] | None = None
    username: Login | None = None
    password: GivenPassword | None = None
    client_id: ClientField | None = None
    client_secret: ClientField | None = None


class LoginRequest(_Request):
    """Credentials: the username or the email, and the password."""

    username: Login
    password: GivenPassword


class TokenOut(BaseModel):
    """An access token and the refresh token that renews it."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")


class RefreshRequest(_Request):
    """A refresh token to exchange (or to end the session of)."""

    refresh_token: OpaqueToken


class PasswordChange(_Request):
    """A password change proven by the old password: with `username`, or with a bearer token."""

    username: Login | None = None
    old_password: GivenPassword
    new_password: NewPassword


class PasswordResetRequest(_Request):
    """Where to send a reset token."""

    email: EmailStr


class VerificationRequest(_Request):
    """Where to send a verification mail: the caller's own address with a bearer token
    (then `email` may be left out), else the address of the account."""

    email: EmailStr | None = None


class VerificationConfirm(_Request):
    """A verification token from the mail."""

    token: OpaqueToken


class PasswordResetConfirm(_Request):
    """A reset token from the mail, and the new password."""

    token: OpaqueToken
    new_password: NewPassword


class Health(BaseModel):
    """The service can reach its database."""

    status: Literal["ok"] = "ok"
