"""/livez, /readyz and /metrics: the API's probes and its Prometheus scrape."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from auth.api.metrics import ApiMetrics
from auth.api.readiness import ApiReadiness
from infra.observability.probes import liveness_answer, readiness_answer

router = APIRouter(tags=["health"])


@router.get("/livez", responses={200: {"description": "the process serves requests"}})
async def livez() -> JSONResponse:
    """200 while the process answers at all: no dependency is asked."""
    status, body = liveness_answer(None)
    return JSONResponse(body, status_code=status)


@router.get(
    "/readyz",
    responses={
        200: {"description": "PostgreSQL and Redis answer, the signing key is loaded"},
        503: {"description": "not ready: the body names each check that failed"},
    },
)
async def readyz(request: Request) -> JSONResponse:
    """200 when PostgreSQL and Redis answer and the signing key is loaded; 503 otherwise."""
    readiness: ApiReadiness = request.app.state.readiness
    status, body = readiness_answer(await readiness.checks())
    return JSONResponse(body, status_code=status)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The app's metrics in the Prometheus text format."""
    registry: ApiMetrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
