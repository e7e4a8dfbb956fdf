"""The audit read API's routes: a user's recorded events, and health."""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from downstream_examples.audit.tables import audit_events

MAX_PAGE = 1000


@dataclass(frozen=True)
class Services:
    """What the lifespan opened; routes reach it through `ServicesDep`."""

    engine: AsyncEngine


def get_services(request: Request) -> Services:
    """The parts of the running app."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class AuditEvent(BaseModel):
    """One recorded event, as it came from the auth service."""

    event_id: UUID
    user_id: UUID
    sequence: int
    type: str
    occurred_at: datetime
    source: str
    data: dict[str, Any]
    recorded_at: datetime


class Health(BaseModel):
    """The service can reach its database."""

    status: Literal["ok"] = "ok"


router = APIRouter()


@router.get("/users/{user_id}/events", response_model=list[AuditEvent], tags=["audit"])
async def user_events(
    user_id: UUID,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after_sequence: Annotated[
        int, Query(ge=0, description="only events after this sequence (the last one seen)")
    ] = 0,
) -> list[AuditEvent]:
    """The user's events in sequence order; a user with none recorded gets []."""
    query = (
        select(audit_events)
        .where(audit_events.c.user_id == user_id, audit_events.c.sequence > after_sequence)
        .order_by(audit_events.c.sequence, audit_events.c.recorded_at)
        .limit(limit)
    )
    async with services.engine.connect() as conn:
        rows = await conn.execute(query)
        return [AuditEvent.model_validate(row._mapping) for row in rows]


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"description": "no database"}},
    tags=["health"],
)
async def healthz(services: ServicesDep) -> Health | JSONResponse:
    """200 when the database answers, 503 otherwise."""
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        body = {
            "detail": {
                "code": "database_unavailable",
                "message": f"the database is not reachable: {exc}",
            }
        }
        return JSONResponse(body, status_code=503)
    return Health()
