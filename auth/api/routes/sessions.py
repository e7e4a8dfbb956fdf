"""Session lists: yours at /auth/sessions, any user's at /users/{username}/sessions (admins)."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response, status

from auth.api.deps import CurrentPrincipal, ServicesDep
from auth.api.mfa_schemas import SessionList, SessionOut
from auth.api.schemas import UsernameParam
from auth.service_layer import sessions as use_cases

router = APIRouter(tags=["sessions"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no live session with this id belongs to the user"}
}


@router.get("/auth/sessions", response_model=SessionList)
async def list_own(principal: CurrentPrincipal, services: ServicesDep) -> SessionList:
    """Your live sessions; `current` marks the one this request's token belongs to."""
    found = await use_cases.list_own_sessions(services.auth, principal=principal)
    return SessionList(sessions=[SessionOut.of(s, principal.session_id) for s in found])


@router.delete(
    "/auth/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND
)
async def end_own(session_id: UUID, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """End one of your sessions: its refresh token and access tokens stop working at once."""
    await use_cases.end_own_session(services.auth, principal=principal, session_id=session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/{username}/sessions", response_model=SessionList, tags=["users"])
async def list_users(
    username: UsernameParam, principal: CurrentPrincipal, services: ServicesDep
) -> SessionList:
    """A user's live sessions (admins only; audited)."""
    found = await use_cases.list_user_sessions(services.auth, actor=principal, username=username)
    return SessionList(sessions=[SessionOut.of(s, principal.session_id) for s in found])


@router.delete(
    "/users/{username}/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_NOT_FOUND,
    tags=["users"],
)
async def end_users(
    username: UsernameParam, session_id: UUID, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """End one session of a user (admins only; audited)."""
    await use_cases.end_user_session(
        services.auth, actor=principal, username=username, session_id=session_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
