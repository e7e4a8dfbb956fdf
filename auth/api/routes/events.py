"""/events: the event log for services with a client-credentials token, in commit-safe order.

A page is JSON: `{"entries": [{"position": N, "event": {...}}], "next": N, "caught_up": b}`.
Not `application/cloudevents-batch+json`: a CloudEvents batch is a bare JSON array, which
has no room for the position a reader resumes from. Each `event` is the envelope's JSON as
the outbox holds it, already a CloudEvent in structured mode, served without re-encoding.
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from auth.api.deps import CurrentService, ServicesDep
from auth.api.feed_schemas import (
    MAX_PAGE,
    MAX_POSITION,
    MAX_SEQUENCE,
    FeedHead,
    FeedPage,
    UserEvents,
)
from auth.service_layer.feed import MAX_WAIT_SECONDS, read_feed
from infra.event_log import LogPage

router = APIRouter(prefix="/events", tags=["events"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, a bad token, or a revoked service client"},
    403: {"description": "a user's token (even an admin's), or a token without events:read"},
}
_LINK = {
    "Link": {"description": '`<url of the next page>; rel="next"`', "schema": {"type": "string"}}
}


@router.get(
    "",
    response_model=FeedPage,
    responses={200: {"headers": _LINK}, **_REFUSED},
)
async def feed(
    request: Request,
    services: ServicesDep,
    _: CurrentService,
    after: Annotated[int, Query(ge=0, le=MAX_POSITION, description="the last position read")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for an event if none is new"),
    ] = 0.0,
) -> Response:
    """Events with a position after `after`, oldest first, never skipping a late commit."""
    page = await read_feed(
        services.event_log, services.wakeups, after=after, limit=limit, wait=wait
    )
    link = request.url.include_query_params(after=page.next)
    return Response(
        _page_json(page), media_type="application/json", headers={"Link": f'<{link}>; rel="next"'}
    )


@router.get("/head", response_model=FeedHead, responses=_REFUSED)
async def head(services: ServicesDep, _: CurrentService) -> FeedHead:
    """The commit-safe head: every event committed now has a position at or below it."""
    return FeedHead(head=await services.event_log.head())


@router.get("/users/{user_id}", response_model=UserEvents, responses=_REFUSED)
async def events_of_user(
    user_id: UUID,
    services: ServicesDep,
    _: CurrentService,
    after_sequence: Annotated[int, Query(ge=0, le=MAX_SEQUENCE)] = 0,
) -> UserEvents:
    """One user's events with a sequence after `after_sequence` (a consumer's gap backfill)."""
    return UserEvents(events=await services.event_log.events_of(user_id, after_sequence))


def _page_json(page: LogPage) -> bytes:
    # The payloads are JSON already (PostgreSQL's text of a jsonb): joined, not re-encoded.
    entries = ",".join(
        f'{{"position":{position},"event":{payload}}}' for position, payload in page.rows
    )
    caught_up = "true" if page.caught_up else "false"
    return f'{{"entries":[{entries}],"next":{page.next},"caught_up":{caught_up}}}'.encode()
