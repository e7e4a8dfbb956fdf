"""The second step of a two-step login: a challenge and a code become a session."""

from auth.domain.mfa_errors import InvalidMfaChallengeError
from auth.domain.sessions import Client
from auth.service_layer.authentication import TokenPair, start_session
from auth.service_layer.context import AuthContext
from auth.service_layer.mfa_codes import prove_second_factor
from auth.service_layer.mfa_context import kit_of


async def verify_mfa_login(
    ctx: AuthContext, *, challenge: str, code: str, client: Client
) -> TokenPair:
    """Tokens for a live challenge and a right TOTP or recovery code.

    The challenge stays usable after a wrong code (until it expires or the limits answer
    429) and is spent by the first right one. The code is accepted in its own transaction
    before the challenge is spent: a code is never accepted twice, whatever happens next.
    """
    kit = kit_of(ctx.mfa)
    user_id = await kit.challenges.owner(challenge)
    if user_id is None:
        raise InvalidMfaChallengeError()
    async with kit.uow_factory() as uow:
        user = await uow.users.get(user_id)
        if user is None or user.status != "active":
            raise InvalidMfaChallengeError()
        method = await prove_second_factor(ctx, kit, uow, user, code, address=client.address)
        await uow.commit()
    if not await kit.challenges.spend(challenge):
        # Another request spent it first, with another right code: one login per challenge.
        raise InvalidMfaChallengeError()
    return await start_session(ctx, user, client=client, second_factor=method)
