"""The first step of a two-step login: a right password of an MFA user gets a challenge."""

from dataclasses import dataclass

from auth.domain.model import User
from auth.service_layer.context import AuthContext


@dataclass(frozen=True)
class MfaChallenge:
    """What a login answers instead of tokens when the account has a second factor."""

    challenge: str
    expires_in: int


async def has_second_factor(ctx: AuthContext, user: User) -> bool:
    """Whether logging in as `user` needs a code after the password."""
    if ctx.mfa is None:
        return False
    async with ctx.mfa.uow_factory() as uow:
        return await uow.mfa.enabled(user.id)


async def second_factor_challenge(
    ctx: AuthContext, user: User, *, address: str | None
) -> MfaChallenge | None:
    """A challenge for POST /auth/mfa/verify if the user has MFA; None if the password is all."""
    if ctx.mfa is None or not await has_second_factor(ctx, user):
        return None
    ttl = ctx.mfa.challenge_ttl_seconds
    challenge = await ctx.mfa.challenges.issue(user.id, ttl_seconds=ttl)
    ctx.audit.record("mfa_challenge_issued", user_id=user.id, address=address)
    return MfaChallenge(challenge=challenge, expires_in=ttl)
