"""Use cases of session lists: the caller's own sessions, and an admin's view of a user's."""

from uuid import UUID

from auth.domain.mfa_errors import SessionNotFoundError
from auth.domain.model import Principal
from auth.domain.sessions import SessionInfo
from auth.service_layer.context import AuthContext, now
from auth.service_layer.users import admin_target


async def list_own_sessions(ctx: AuthContext, *, principal: Principal) -> list[SessionInfo]:
    """The caller's live sessions, the most recently used first."""
    async with ctx.uow_factory() as uow:
        return await uow.sessions.list_live(principal.user_id, now=now())


async def end_own_session(ctx: AuthContext, *, principal: Principal, session_id: UUID) -> None:
    """End one of the caller's sessions: its refresh token and access tokens stop at once.

    An id that is not one of the caller's live sessions (someone else's included) is
    SessionNotFoundError: whether it exists elsewhere is not told.
    """
    async with ctx.uow_factory() as uow:
        ended = await uow.sessions.revoke_owned(
            session_id, principal.user_id, now=now(), reason="ended by user"
        )
        if not ended:
            raise SessionNotFoundError()
        await uow.commit()
    ctx.audit.record("session_ended", user_id=principal.user_id, session_id=session_id)


async def list_user_sessions(
    ctx: AuthContext, *, actor: Principal, username: str
) -> list[SessionInfo]:
    """A user's live sessions, for an admin (audited: it shows where the user logs in from)."""
    async with ctx.uow_factory() as uow:
        user = await admin_target(uow, actor, username)
        found = await uow.sessions.list_live(user.id, now=now())
    ctx.audit.record("sessions_listed", user_id=user.id, username=user.username, by=actor.user_id)
    return found


async def end_user_session(
    ctx: AuthContext, *, actor: Principal, username: str, session_id: UUID
) -> None:
    """An admin ends one session of a user (audited); another user's session id is a 404."""
    async with ctx.uow_factory() as uow:
        user = await admin_target(uow, actor, username)
        ended = await uow.sessions.revoke_owned(
            session_id, user.id, now=now(), reason="ended by admin"
        )
        if not ended:
            raise SessionNotFoundError()
        await uow.commit()
    ctx.audit.record("session_ended", user_id=user.id, session_id=session_id, by=actor.user_id)
