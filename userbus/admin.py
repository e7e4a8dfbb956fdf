"""`userbus users create-admin`: the first admin of a deployment, without touching SQL."""

import re

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import create_async_engine

from auth.api.schemas import USERNAME_PATTERN
from auth.domain.passwords import BcryptPasswordHasher
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork, UnitOfWork
from auth.service_layer.users import create_admin
from auth.settings import AuthSettings


class AdminInputError(ValueError):
    """The username or email given on the command line is not acceptable."""


def check_admin_input(username: str, email: str) -> str:
    """The normalised email; AdminInputError when either value would be refused by the API."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise AdminInputError("the username must be 3-32 characters of letters, digits, _ . -")
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AdminInputError(f"invalid email: {exc}") from exc


async def create_first_admin(
    settings: AuthSettings, *, username: str, email: str, password: str
) -> str:
    """Create the admin and return its id (its UserRegistered event goes to the outbox)."""
    engine = create_async_engine(settings.database_url)
    hasher = BcryptPasswordHasher(settings.bcrypt_rounds, workers=1)
    try:

        def uow_factory() -> UnitOfWork:
            return SqlAlchemyUnitOfWork(engine, event_source=settings.event_source)

        user = await create_admin(
            uow_factory, hasher, username=username, email=email, password=password
        )
        return str(user.id)
    finally:
        hasher.close()
        await engine.dispose()
