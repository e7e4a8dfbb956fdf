"""HttpFeedLog: the auth service's event log read over HTTP (GET /events), as an EventLog.

A downstream service rebuilds or backfills through the feed without credentials to the auth
database: it holds a service client's id and secret (`userbus service create NAME`), and
`HttpFeedLog.with_client_credentials` exchanges them for short-lived tokens as it goes. The
feed hands out the same commit-safe pages as infra.event_log.PostgresEventLog.

Errors raise (FeedAuthError, FeedUnavailableError) rather than retry here: a replay resumes
from its checkpoint, and a consumer's backfill is retried with the message's redelivery.
"""

import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote_plus
from uuid import UUID

import httpx

from events import Envelope, envelope_from_json
from infra.event_log import EventLog, LogPage

# Long enough for a page the feed holds back while a writer's transaction ends.
DEFAULT_TIMEOUT_SECONDS = 30.0
# A token is renewed once this share of its lifetime has passed (clocks and requests in flight
# need the rest).
RENEW_AFTER = 0.8
NDJSON = "application/x-ndjson"
# How auth/api/routes/events.py writes each NDJSON line.
_ENTRY_START = '{"position":'
_EVENT_KEY = ',"event":'
# The clock of token lifetimes (a test moves it).
_clock = time.monotonic


class FeedError(Exception):
    """The feed answered something other than what was asked for."""


class FeedAuthError(FeedError):
    """The feed or its token endpoint refused the credentials (401 or 403)."""


class FeedUnavailableError(FeedError):
    """The feed could not be reached, or failed (5xx): try again later."""


@dataclass(frozen=True)
class ClientCredentials:
    """A service client's id and secret, and where to exchange them for a token."""

    token_url: str
    client_id: str
    client_secret: str


class HttpFeedLog:
    """The EventLog of a feed URL (`http://auth:8000/events`), read with a bearer token."""

    def __init__(
        self,
        feed_url: str,
        token: str,
        *,
        credentials: ClientCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._feed_url = feed_url.rstrip("/")
        self._token = token
        self._credentials = credentials
        self._renew_at = float("inf") if credentials is None else 0.0
        self._client = httpx.AsyncClient(timeout=timeout)

    @classmethod
    def with_client_credentials(
        cls,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> "HttpFeedLog":
        """The feed of the auth service at `base_url`, with tokens from the client credentials.

        The first request gets a token (POST /auth/token, grant_type=client_credentials); it
        is renewed before it expires, and once more if the feed refuses it.
        """
        root = base_url.rstrip("/")
        credentials = ClientCredentials(f"{root}/auth/token", client_id, client_secret)
        return cls(f"{root}/events", "", credentials=credentials, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def page(self, after: int, limit: int) -> LogPage:
        """Events with position > `after`, at most `limit` (the feed caps it at 1000).

        The page comes as NDJSON, so each event's text is cut from its line, not parsed
        (LogPage.envelopes() validates it).
        """
        params = {"after": after, "limit": limit}
        response = await self._get(self._feed_url, params, accept=NDJSON)
        if not response.headers.get("content-type", "").startswith(NDJSON):
            raise FeedError(f"the feed answered {response.headers.get('content-type')}, not NDJSON")
        try:
            return _ndjson_page(response.text)
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedError(f"the feed's page is malformed: {exc!r}") from exc

    async def events_of(self, user_id: UUID, after_sequence: int = 0) -> list[Envelope]:
        """One user's committed events with sequence > `after_sequence`, in sequence order."""
        url = f"{self._feed_url}/users/{user_id}"
        body = _json_of(await self._get(url, {"after_sequence": after_sequence}))
        try:
            return [envelope_from_json(json.dumps(event)) for event in body["events"]]
        except (KeyError, TypeError) as exc:
            raise FeedError(f"the feed's answer is malformed: {exc!r}") from exc

    async def head(self) -> int:
        """A position every event committed now is at or below."""
        body = _json_of(await self._get(f"{self._feed_url}/head", {}))
        try:
            return int(body["head"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedError(f"the feed's head is malformed: {exc!r}") from exc

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def _get(
        self, url: str, params: dict[str, Any], *, accept: str = "application/json"
    ) -> httpx.Response:
        """A GET with the bearer token; the response if it is a 200, else the FeedError."""
        if _clock() >= self._renew_at:
            await self._renew()
        response = await self._send("GET", url, params=params, headers=self._headers(accept))
        if response.status_code == 401 and self._credentials is not None:
            # Refused before its time (a restarted service with a new key, a skewed clock):
            # one new token, one more try.
            await self._renew()
            response = await self._send("GET", url, params=params, headers=self._headers(accept))
        _check(response)
        return response

    async def _renew(self) -> None:
        assert self._credentials is not None
        creds = self._credentials
        # RFC 6749 2.3.1: id and secret are form-encoded, then sent as HTTP Basic.
        auth = (quote_plus(creds.client_id), quote_plus(creds.client_secret))
        started = _clock()
        response = await self._send(
            "POST", creds.token_url, data={"grant_type": "client_credentials"}, auth=auth
        )
        body = _json_of(response)
        try:
            self._token = str(body["access_token"])
            self._renew_at = started + RENEW_AFTER * float(body["expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedError(f"the token endpoint's answer is malformed: {exc!r}") from exc

    def _headers(self, accept: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": accept}

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise FeedUnavailableError(f"{method} {url}: {exc!r}") from exc


def _check(response: httpx.Response) -> None:
    """Nothing for a 200; the matching FeedError for any other answer."""
    if response.status_code == 200:
        return
    where = f"{response.request.method} {response.request.url.copy_with(query=None)}"
    if response.status_code in (401, 403):
        raise FeedAuthError(f"{where}: {response.status_code} {_detail(response)}")
    if response.status_code >= 500:
        raise FeedUnavailableError(f"{where}: {response.status_code}")
    raise FeedError(f"{where}: {response.status_code} {_detail(response)}")


def _json_of(response: httpx.Response) -> Any:
    """The JSON body of a successful answer."""
    _check(response)
    try:
        return response.json()
    except ValueError as exc:
        raise FeedError(f"{response.request.url}: the answer is not JSON") from exc


def _ndjson_page(text: str) -> LogPage:
    """A page from its NDJSON lines: `{"position":N,"event":...}` each, then the tail."""
    *lines, tail = text.rstrip("\n").split("\n")
    rows = []
    for line in lines:
        if not (line.startswith(_ENTRY_START) and line.endswith("}")):
            raise ValueError(f"not a feed entry: {line[:80]!r}")
        cut = line.index(_EVENT_KEY, len(_ENTRY_START))
        rows.append((int(line[len(_ENTRY_START) : cut]), line[cut + len(_EVENT_KEY) : -1]))
    end = json.loads(tail)
    return LogPage(rows, int(end["next"]), caught_up=bool(end["caught_up"]))


def _detail(response: httpx.Response) -> str:
    try:
        return json.dumps(response.json().get("detail"))
    except (ValueError, AttributeError):
        return response.text[:200]


if TYPE_CHECKING:  # mypy holds HttpFeedLog to the EventLog protocol, signatures included
    _IS_AN_EVENT_LOG: type[EventLog] = HttpFeedLog
