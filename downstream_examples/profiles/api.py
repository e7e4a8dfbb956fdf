"""The profile read API's routes, and the one place its errors become HTTP responses."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from downstream_examples.profiles.queries import (
    Profile,
    ProfileNotFoundError,
    profile_by_id,
    profile_by_username,
)
from downstream_examples.profiles.tables import profiles

router = APIRouter()
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such profile (code `profile_not_found`)"}
}


def get_engine(request: Request) -> AsyncEngine:
    """The engine the lifespan opened."""
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]


class Health(BaseModel):
    """The answer of /healthz when the service can serve."""

    status: Literal["ok"] = "ok"


@router.get("/profiles/{user_id}", response_model=Profile, responses=NOT_FOUND, tags=["profiles"])
async def get_profile(user_id: UUID, engine: EngineDep) -> Profile:
    """The profile of one user, by id."""
    async with engine.connect() as conn:
        return await profile_by_id(conn, user_id)


@router.get("/profiles", response_model=Profile, responses=NOT_FOUND, tags=["profiles"])
async def find_profile(
    username: Annotated[str, Query(min_length=1, max_length=256)], engine: EngineDep
) -> Profile:
    """The profile of the user called `username` (ignoring case)."""
    async with engine.connect() as conn:
        return await profile_by_username(conn, username)


@router.get("/healthz", response_model=Health, responses={503: {"description": "not ready"}})
async def healthz(engine: EngineDep) -> Health | JSONResponse:
    """200 when the profile table can be read, 503 otherwise."""
    try:
        async with engine.connect() as conn:
            # Every column named: a table the consumer has not yet created or upgraded fails.
            await conn.execute(select(profiles).limit(0))
    except (SQLAlchemyError, OSError):
        body = error_body(
            "database_unavailable",
            "the profile table cannot be read (is the database up, has the consumer started?)",
        )
        return JSONResponse(body, status_code=503)
    return Health()


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error this API answers itself."""
    return {"detail": {"code": code, "message": message}}


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProfileNotFoundError)
    return JSONResponse(error_body(exc.code, str(exc)), status_code=404)


def install_error_handlers(app: FastAPI) -> None:
    """Map the read side's errors to HTTP answers."""
    app.add_exception_handler(ProfileNotFoundError, _not_found)
