"""/events: the event log for services with a client-credentials token, in commit-safe order.

A page is JSON: `{"entries": [{"position": N, "event": {...}}], "next": N, "caught_up": b}`.
Not `application/cloudevents-batch+json`: a CloudEvents batch is a bare JSON array, which
has no room for the position a reader resumes from. Each `event` is the envelope's JSON as
the outbox holds it, already a CloudEvent in structured mode, served without re-encoding.

With `Accept: application/x-ndjson` the same page comes as one line per entry, and a last
line `{"next": N, "caught_up": b}`. A client can then take each event's text without parsing
the page (infra/feed.py does): no event's JSON holds a raw newline.
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
NDJSON = "application/x-ndjson"
_PAGE_CONTENT = {
    NDJSON: {
        "schema": {
            "type": "string",
            "description": 'lines `{"position": N, "event": {...}}`, then `{"next": N, '
            '"caught_up": b}`',
        }
    }
}
_LINK = {
    "Link": {"description": '`<url of the next page>; rel="next"`', "schema": {"type": "string"}}
}


@router.get(
    "",
    response_model=FeedPage,
    responses={200: {"headers": _LINK, "content": _PAGE_CONTENT}, **_REFUSED},
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
    headers = {"Link": f'<{link}>; rel="next"', "Vary": "Accept"}
    if NDJSON in request.headers.get("accept", ""):
        return Response(_page_ndjson(page), media_type=NDJSON, headers=headers)
    return Response(_page_json(page), media_type="application/json", headers=headers)


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


# The payloads are JSON already (PostgreSQL's text of a jsonb, on one line): joined into the
# body, never parsed and re-encoded.


def _page_json(page: LogPage) -> bytes:
    entries = ",".join(
        f'{{"position":{position},"event":{payload}}}' for position, payload in page.rows
    )
    return f'{{"entries":[{entries}],{_tail(page)}}}'.encode()


def _page_ndjson(page: LogPage) -> bytes:
    lines = [f'{{"position":{position},"event":{payload}}}\n' for position, payload in page.rows]
    lines.append(f"{{{_tail(page)}}}\n")
    return "".join(lines).encode()


def _tail(page: LogPage) -> str:
    return f'"next":{page.next},"caught_up":{"true" if page.caught_up else "false"}'
