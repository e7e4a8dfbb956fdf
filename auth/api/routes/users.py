"""/users: registration, reading, listing, changing and deleting accounts."""

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Response, status

from auth.api.deps import (
    ClientAddress,
    CurrentPrincipal,
    CurrentUser,
    OptionalPrincipal,
    ServicesDep,
    UserAgent,
)
from auth.api.mfa_schemas import MfaChallengeOut, login_out
from auth.api.routes.verification import mail_verification
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
from auth.service_layer.verification import limit_mail

router = APIRouter(prefix="/users", tags=["users"])


_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "too many registrations or mails; see Retry-After"}
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut, responses=_LIMITED)
async def register(
    body: UserCreate,
    services: ServicesDep,
    actor: OptionalPrincipal,
    address: ClientAddress,
    background: BackgroundTasks,
) -> UserOut:
    """Register a new account, and mail it a verification token; with an admin's token,
    `role` may be `admin`.

    With the registration saga on (USERBUS_REQUIRE_PROFILE), the account is `pending` until
    the profile service has made its profile: it cannot log in until then.
    """
    # Counted first: a taken address costs the same as a free one.
    await limit_mail(services.auth, email=str(body.email), address=address, registration=True)
    user = await register_user(
        services.auth,
        username=body.username,
        email=str(body.email),
        password=body.password,
        display_name=body.display_name,
        role=body.role,
        actor=actor,
    )
    background.add_task(mail_verification, services.auth, user.id)
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


@router.put("/{username}", response_model=UserOut, responses=_LIMITED)
async def update_user(
    username: UsernameParam,
    body: UserUpdate,
    principal: CurrentPrincipal,
    services: ServicesDep,
    address: ClientAddress,
    background: BackgroundTasks,
) -> UserOut:
    """Change email and display name (yours, or any as an admin); role and status as an admin.

    An email that is not verified yet (a new one) is mailed a verification token.
    """
    profile: dict[ProfileField, str | None] = {}
    if "email" in body.model_fields_set and body.email is not None:
        profile["email"] = new_email = str(body.email)
        await limit_mail(services.auth, email=new_email, address=address)
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
    if "email" in profile and not user.email_verified:
        background.add_task(mail_verification, services.auth, user.id)
    return UserOut.of(user)


@router.delete("/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(
    username: UsernameParam, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Delete an account: your own, or any as an admin."""
    await use_cases.delete_user(services.auth, actor=principal, username=username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
