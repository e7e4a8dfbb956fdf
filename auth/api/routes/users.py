"""/users: registration, reading, listing, changing and deleting accounts."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from auth.api.deps import (
    ClientAddress,
    CurrentPrincipal,
    CurrentUser,
    OptionalPrincipal,
    ServicesDep,
    UserAgent,
)
from auth.api.mfa_schemas import MfaChallengeOut, login_out
from auth.api.schemas import (
    LoginRequest,
    TokenOut,
    UserCreate,
    UsernameParam,
    UserOut,
    UserPage,
    UserUpdate,
)
from auth.domain.model import ProfileField
from auth.service_layer import users as use_cases
from auth.service_layer.authentication import log_in
from auth.service_layer.registrations import register_user

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(body: UserCreate, services: ServicesDep, actor: OptionalPrincipal) -> UserOut:
    """Register a new account; with an admin's token, `role` may be `admin`.

    With the registration saga on (USERBUS_REQUIRE_PROFILE), the account is `pending` until
    the profile service has made its profile: it cannot log in until then.
    """
    user = await register_user(
        services.auth,
        username=body.username,
        email=str(body.email),
        password=body.password,
        display_name=body.display_name,
        role=body.role,
        actor=actor,
    )
    return UserOut.of(user)


@router.post("/authenticate", response_model=TokenOut | MfaChallengeOut, tags=["auth"])
async def authenticate(
    body: LoginRequest, services: ServicesDep, address: ClientAddress, agent: UserAgent
) -> TokenOut | MfaChallengeOut:
    """The same as POST /auth/login (a second factor answers with its challenge too)."""
    result = await log_in(
        services.auth, login=body.username, password=body.password, address=address,
        user_agent=agent,
    )  # fmt: skip
    return login_out(result)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    """The caller's own account."""
    return UserOut.of(user)


@router.get("", response_model=UserPage)
async def list_users(
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> UserPage:
    """All users in username order, a page at a time (admins only)."""
    page = await use_cases.list_users(services.auth, actor=principal, limit=limit, cursor=cursor)
    return UserPage(items=[UserOut.of(u) for u in page.users], next_cursor=page.next_cursor)


@router.get("/{username}", response_model=UserOut)
async def get_user(
    username: UsernameParam, principal: CurrentPrincipal, services: ServicesDep
) -> UserOut:
    """One account: your own, or any as an admin."""
    return UserOut.of(await use_cases.get_user(services.auth, actor=principal, username=username))


@router.put("/{username}", response_model=UserOut)
async def update_user(
    username: UsernameParam,
    body: UserUpdate,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> UserOut:
    """Change email and display name (yours, or any as an admin); role and status as an admin."""
    profile: dict[ProfileField, str | None] = {}
    if "email" in body.model_fields_set and body.email is not None:
        profile["email"] = str(body.email)
    if "display_name" in body.model_fields_set:
        profile["display_name"] = body.display_name
    user = await use_cases.update_user(
        services.auth,
        actor=principal,
        username=username,
        profile=profile,
        role=body.role,
        status=body.status,
    )
    return UserOut.of(user)


@router.delete("/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(
    username: UsernameParam, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Delete an account: your own, or any as an admin."""
    await use_cases.delete_user(services.auth, actor=principal, username=username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
