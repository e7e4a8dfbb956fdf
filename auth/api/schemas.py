"""Request and response bodies of the HTTP API."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from auth.domain.model import Role, Status, User
from auth.domain.passwords import password_problem

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


def _acceptable_password(password: str) -> str:
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(problem)
    return password


Username = Annotated[str, Field(pattern=USERNAME_PATTERN, examples=["alice"])]
NewPassword = Annotated[
    str, Field(examples=["correct horse battery"]), AfterValidator(_acceptable_password)
]
# Presented passwords are only bounded, never judged: a wrong one is a 401, not a 422.
GivenPassword = Annotated[str, Field(min_length=1, max_length=1024)]
Login = Annotated[str, Field(min_length=1, max_length=320, description="username or email")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Request):
    """Registration of a new account."""

    username: Username
    email: EmailStr
    password: NewPassword


class UserOut(BaseModel):
    """A user as the API shows it: never the password hash."""

    id: UUID
    username: str
    email: str
    role: Role
    status: Status
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> "UserOut":
        """The public view of a user."""
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            role=user.role,
            status=user.status,
            created_at=user.created_at,
        )


class LoginRequest(_Request):
    """Credentials: the username or the email, and the password."""

    username: Login
    password: GivenPassword


class TokenOut(BaseModel):
    """An access token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")


class PasswordChange(_Request):
    """A password change proven by the old password."""

    username: Login
    old_password: GivenPassword
    new_password: NewPassword


class Health(BaseModel):
    """The service can reach its database."""

    status: Literal["ok"] = "ok"
