"""Helpers of the unit tests: stored users, principals, and tokens read back from mails."""

from datetime import UTC, datetime
from uuid import UUID

from auth.adapters.secrets import digest
from auth.domain.model import Principal, Role, Status, User
from infra.mail import Message
from tests.unit.fakes import FAKE_HASH_PREFIX, FakeUnitOfWorkFactory

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# What request_password_reset writes before a bare token (no reset URL configured).
TOKEN_LEAD_IN = "Use this reset token:\n\n  "


async def add_user(
    uow_factory: FakeUnitOfWorkFactory,
    username: str = "alice",
    *,
    email: str | None = None,
    role: Role = "user",
    status: Status = "active",
    password: str = PASSWORD,
) -> User:
    """A committed user whose password is `password`, stored without the hasher's help."""
    user = User.register(
        username=username,
        email=email or f"{username.lower()}@example.com",
        password_hash=FAKE_HASH_PREFIX + password,
        now=NOW,
        role=role,
    )
    if status != "active":
        user.change_status(status, now=NOW)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


def principal_of(user: User, session_id: UUID | None = None) -> Principal:
    """The principal a token of this user would name."""
    return Principal(user_id=user.id, username=user.username, role=user.role, session_id=session_id)


def reset_token_in(message: Message) -> str:
    """The bare reset token a mail carries (sent without a reset URL)."""
    assert TOKEN_LEAD_IN in message.body, message.body
    return message.body.split(TOKEN_LEAD_IN, 1)[1].split("\n", 1)[0]


def is_stored_reset_token(uow_factory: FakeUnitOfWorkFactory, token: str) -> bool:
    """Whether `token` is a reset token the store knows (by its digest)."""
    return digest(token) in uow_factory.tables.password_resets
