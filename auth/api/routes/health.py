"""/healthz: whether the service can reach its database."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from auth.api.deps import ServicesDep
from auth.api.errors import error_body
from auth.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"description": "no database"}})
async def healthz(services: ServicesDep) -> Health | JSONResponse:
    """200 when the database answers, 503 otherwise."""
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        body = error_body("database_unavailable", f"the database is not reachable: {exc}")
        return JSONResponse(body, status_code=503)
    return Health()
