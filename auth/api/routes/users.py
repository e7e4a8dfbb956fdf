"""/users: registration and deletion of accounts."""

from fastapi import APIRouter, Response, status

from auth.api.deps import CurrentPrincipal, ServicesDep
from auth.api.schemas import UserCreate, UserOut
from auth.service_layer import services as use_cases

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(body: UserCreate, services: ServicesDep) -> UserOut:
    """Register a new account (409 when the username or email is taken)."""
    user = await use_cases.register_user(
        services.uow_factory,
        services.hasher,
        username=body.username,
        email=str(body.email),
        password=body.password,
    )
    return UserOut.of(user)


@router.delete("/{username}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(username: str, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """Delete an account: your own, or any as an admin."""
    await use_cases.delete_user(services.uow_factory, actor=principal, username=username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
