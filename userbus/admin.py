"""`userbus users create-admin`: the first admin of a deployment, without touching SQL."""

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import create_async_engine

from auth.bootstrap import build_context
from auth.domain.errors import InvalidUsernameError
from auth.domain.model import check_username
from auth.service_layer.registrations import create_admin
from auth.settings import AuthSettings


class AdminInputError(ValueError):
    """The username or email given on the command line is not acceptable."""


def check_admin_input(username: str, email: str) -> str:
    """The normalised email; AdminInputError when either value would be refused by the API."""
    # Checked here too, before the password prompt: nobody types a password for a bad name.
    try:
        check_username(username)
    except InvalidUsernameError as exc:
        raise AdminInputError(exc.message) from None
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AdminInputError(f"invalid email: {exc}") from exc


async def create_first_admin(
    settings: AuthSettings, *, username: str, email: str, password: str
) -> str:
    """Create the admin and return its id (its UserRegistered event goes to the outbox)."""
    engine = create_async_engine(settings.database_url)
    try:
        context, resources = build_context(settings, engine)
        async with resources:
            user = await create_admin(context, username=username, email=email, password=password)
        return str(user.id)
    finally:
        await engine.dispose()
