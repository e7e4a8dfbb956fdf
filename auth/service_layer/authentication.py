"""Use cases of logging in and out: credentials, sessions, rotating refresh tokens."""

from dataclasses import dataclass

from auth.domain.errors import (
    EmailNotVerifiedError,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    RefreshTokenReusedError,
    RegistrationPendingError,
    TooManyAttemptsError,
)
from auth.domain.mfa_errors import MfaRequiredError
from auth.domain.model import Principal, User
from auth.domain.passwords import PasswordHasher
from auth.domain.sessions import Client
from auth.service_layer.context import AuthContext, now
from auth.service_layer.mfa_challenges import (
    MfaChallenge,
    has_second_factor,
    second_factor_challenge,
)


@dataclass(frozen=True)
class TokenPair:
    """What a login or a refresh hands out."""

    access_token: str
    refresh_token: str
    expires_in: int
    user: User


async def authenticate(ctx: AuthContext, *, login: str, password: str) -> User:
    """The active user whose username or email and password match; else InvalidCredentialsError.

    A pending account (registration saga) with the right password is RegistrationPendingError.

    An unknown login still costs one bcrypt verification, so timing does not tell which
    usernames exist. The error's `reason` is for the audit log only, never for the client.
    """
    async with ctx.uow_factory() as uow:
        user = await uow.users.get_by_login(login)
    return await _verified(ctx.hasher, user, password)


async def _verified(hasher: PasswordHasher, user: User | None, password: str) -> User:
    matches = await hasher.verify(password, user.password_hash if user else None)
    if user is None:
        raise InvalidCredentialsError(reason="unknown_user")
    if not matches:
        raise InvalidCredentialsError(reason="wrong_password")
    if user.status == "pending":
        # Told only to whoever knows the password: the account exists and will open soon.
        raise RegistrationPendingError(user.username)
    if user.status != "active":
        raise InvalidCredentialsError(reason=f"user_{user.status}")
    return user


async def check_credentials(
    ctx: AuthContext, *, login: str, password: str, address: str | None
) -> User:
    """`authenticate` behind the brute-force limits, with every attempt audited.

    The limits are checked before any hashing: a locked-out guesser costs no bcrypt time.
    Failures count against the account, whether it was named by username or by email.
    """
    async with ctx.uow_factory() as uow:
        account = await uow.users.get_by_login(login)
    key = account.username if account else login
    retry_after = await ctx.limiter.retry_after(key, address)
    if retry_after is not None:
        ctx.audit.record("login_refused", login=login, address=address, retry_after=retry_after)
        raise TooManyAttemptsError(retry_after)
    try:
        user = await _verified(ctx.hasher, account, password)
    except InvalidCredentialsError as exc:
        ctx.audit.record("login_failed", login=login, address=address, reason=exc.reason)
        locked_for = await ctx.limiter.record_failure(key, address)
        if locked_for is not None:
            ctx.audit.record("login_locked", login=login, address=address, seconds=locked_for)
        raise
    except RegistrationPendingError:
        # The right password: not a failure that counts against the limits.
        ctx.audit.record(
            "login_failed", login=login, address=address, reason="registration_pending"
        )
        raise
    await ctx.limiter.record_success(key)
    return user


async def check_login(ctx: AuthContext, *, login: str, password: str, address: str | None) -> User:
    """`check_credentials`, and, where the deployment requires it, a verified email.

    The refusal (EmailNotVerifiedError) comes only after the password matched: a guesser
    still gets InvalidCredentialsError, and learns nothing of the account.
    """
    user = await check_credentials(ctx, login=login, password=password, address=address)
    if ctx.require_verified_email and not user.email_verified:
        ctx.audit.record("login_refused", login=login, address=address, reason="email_not_verified")
        raise EmailNotVerifiedError(user.username)
    return user


async def log_in(
    ctx: AuthContext,
    *,
    login: str,
    password: str,
    address: str | None,
    user_agent: str | None = None,
) -> TokenPair | MfaChallenge:
    """Check the credentials and open a session: an access token and a refresh token.

    A user with a second factor gets an MfaChallenge instead, for POST /auth/mfa/verify.
    """
    user = await check_login(ctx, login=login, password=password, address=address)
    challenge = await second_factor_challenge(ctx, user, address=address)
    if challenge is not None:
        return challenge
    return await start_session(ctx, user, client=Client.of(address, user_agent))


async def check_basic(ctx: AuthContext, *, login: str, password: str, address: str | None) -> User:
    """`check_credentials` for HTTP Basic, which cannot carry a second factor.

    A user with MFA is refused with MfaRequiredError (told only with the right password).
    """
    user = await check_login(ctx, login=login, password=password, address=address)
    if await has_second_factor(ctx, user):
        ctx.audit.record("login_failed", login=login, address=address, reason="mfa_basic")
        raise MfaRequiredError("this account has a second factor: log in with POST /auth/login")
    return user


async def start_session(
    ctx: AuthContext, user: User, *, client: Client, second_factor: str | None = None
) -> TokenPair:
    """Open a session for a user whose credentials were proven: its first token pair."""
    async with ctx.uow_factory() as uow:
        session_id, refresh_token = await uow.sessions.create(
            user.id, now=now(), ttl=ctx.lifetimes.refresh_token, client=client
        )
        await uow.commit()
    ctx.audit.record(
        "login_succeeded", user_id=user.id, username=user.username, address=client.address,
        session_id=session_id, **({"mfa": second_factor} if second_factor else {}),
    )  # fmt: skip
    issued = ctx.tokens.issue(user, session_id=session_id)
    return TokenPair(issued.token, refresh_token, issued.expires_in, user)


async def refresh(
    ctx: AuthContext, *, refresh_token: str, address: str | None, user_agent: str | None = None
) -> TokenPair:
    """Exchange a refresh token for a new pair; the old one stops working.

    A token presented again after it was exchanged was copied: whoever holds the newer one
    may be the thief or the owner, so the whole session ends (RefreshTokenReusedError).
    """
    moment = now()
    async with ctx.uow_factory() as uow:
        grant = await uow.sessions.find_refresh(refresh_token)
        if grant is None:
            raise InvalidRefreshTokenError()
        if grant.token_used:
            await uow.sessions.revoke(grant.session_id, now=moment, reason="refresh token reused")
            await uow.commit()
            ctx.audit.record(
                "refresh_token_reused", user_id=grant.user_id, session_id=grant.session_id,
                address=address,
            )  # fmt: skip
            raise RefreshTokenReusedError()
        user = await uow.users.get(grant.user_id)
        if not grant.usable(moment) or user is None or user.status != "active":
            raise InvalidRefreshTokenError()
        new_refresh = await uow.sessions.rotate(
            grant, now=moment, ttl=ctx.lifetimes.refresh_token,
            client=Client.of(address, user_agent),
        )  # fmt: skip
        await uow.commit()
    ctx.audit.record(
        "token_refreshed", user_id=user.id, session_id=grant.session_id, address=address
    )
    issued = ctx.tokens.issue(user, session_id=grant.session_id)
    return TokenPair(issued.token, new_refresh, issued.expires_in, user)


async def log_out(ctx: AuthContext, *, refresh_token: str) -> None:
    """End the session of a refresh token (an unknown token ends nothing, and says nothing)."""
    async with ctx.uow_factory() as uow:
        grant = await uow.sessions.find_refresh(refresh_token)
        if grant is None:
            return
        await uow.sessions.revoke(grant.session_id, now=now(), reason="logout")
        await uow.commit()
    ctx.audit.record("logout", user_id=grant.user_id, session_id=grant.session_id)


async def log_out_everywhere(ctx: AuthContext, *, principal: Principal) -> int:
    """End every session of the caller, the current one included; how many ended."""
    async with ctx.uow_factory() as uow:
        ended = await uow.sessions.revoke_all(principal.user_id, now=now(), reason="logout-all")
        await uow.commit()
    ctx.audit.record("logout_all", user_id=principal.user_id, sessions=ended)
    return ended
