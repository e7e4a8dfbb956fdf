"""HttpFeedLog against the real app served by uvicorn on a free port: the EventLog over HTTP."""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from auth.main import create_app
from auth.settings import AuthSettings
from consumers.jwks import JwksVerifier, TokenRejectedError
from events import event_from_envelope
from infra.event_log import PostgresEventLog
from infra.feed import FeedAuthError, FeedError, FeedUnavailableError, HttpFeedLog
from infra.settings import asyncpg_dsn
from tests.conftest import free_port, unique_username
from tests.integration.feed_helpers import (
    insert_registration,
    new_service_client,
    revoke,
    service_token,
)
from tests.integration.helpers import bearer, login, register

pytestmark = pytest.mark.integration


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the fixture stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free port; its base URL."""
    port = free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def base_url(isolated_auth_settings: AuthSettings) -> AsyncIterator[str]:
    """The API on this test's own database, served over TCP on a free port."""
    async with served(create_app(isolated_auth_settings)) as url:
        yield url


@pytest.fixture
async def api(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client of the served API, for writing events."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        yield client


async def test_pages_over_http_equal_pages_of_the_database(
    base_url: str, api: httpx.AsyncClient, isolated_auth_settings: AuthSettings
) -> None:
    for _ in range(12):
        await register(api, unique_username())
    client_id, secret = await new_service_client(isolated_auth_settings)
    async with (
        HttpFeedLog.with_client_credentials(base_url, client_id, secret) as feed,
        PostgresEventLog(isolated_auth_settings.database_url) as database,
    ):
        assert await feed.head() == await database.head()
        after, pages = 0, 0
        while True:
            over_http, direct = await feed.page(after, 5), await database.page(after, 5)
            assert [p for p, _ in over_http.rows] == [p for p, _ in direct.rows]
            assert over_http.envelopes() == direct.envelopes()
            assert (over_http.next, over_http.caught_up) == (direct.next, direct.caught_up)
            pages += 1
            after = over_http.next
            if over_http.caught_up:
                break
        assert pages == 3
        assert {type(event_from_envelope(e)).__name__ for e in over_http.envelopes()} == {
            "UserRegistered"
        }


async def test_events_of_one_user_over_http(
    base_url: str, api: httpx.AsyncClient, isolated_auth_settings: AuthSettings
) -> None:
    name = unique_username()
    user_id = uuid.UUID((await register(api, name))["id"])
    own = bearer(await login(api, name))
    for display_name in ("Ada", "Ada L.", "Ada Lovelace"):
        await api.put(f"/users/{name}", json={"display_name": display_name}, headers=own)
    token = await service_token(api, *await new_service_client(isolated_auth_settings))
    async with HttpFeedLog(f"{base_url}/events", token) as feed:
        every = await feed.events_of(user_id)
        assert [(e.sequence, e.type) for e in every] == [
            (1, "UserRegistered"), (2, "UserUpdated"), (3, "UserUpdated"), (4, "UserUpdated"),
        ]  # fmt: skip
        assert [e.sequence for e in await feed.events_of(user_id, after_sequence=2)] == [3, 4]
        assert await feed.events_of(uuid.uuid4()) == []


async def test_a_late_commit_is_not_skipped_over_http(
    base_url: str, isolated_auth_settings: AuthSettings
) -> None:
    client_id, secret = await new_service_client(isolated_auth_settings)
    dsn = asyncpg_dsn(isolated_auth_settings.database_url)
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    async with HttpFeedLog.with_client_credentials(base_url, client_id, secret) as feed:
        try:
            slow = a.transaction()
            await slow.start()
            early = await insert_registration(a, uuid.uuid4())
            late = await insert_registration(b, uuid.uuid4())
            during = await feed.page(0, 100)
            assert during.rows == []
            assert during.next < early
            await slow.commit()
            after = await feed.page(during.next, 100)
            assert [position for position, _ in after.rows] == [early, late]
        finally:
            await a.close()
            await b.close()


async def test_the_token_is_renewed_before_it_expires(
    base_url: str,
    api: httpx.AsyncClient,
    isolated_auth_settings: AuthSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await register(api, unique_username())
    clock = [1000.0]
    monkeypatch.setattr("infra.feed._clock", lambda: clock[0])
    client_id, secret = await new_service_client(isolated_auth_settings)
    ttl = isolated_auth_settings.service_token_ttl_seconds
    with caplog.at_level(logging.INFO, logger="userbus.audit"):
        async with HttpFeedLog.with_client_credentials(base_url, client_id, secret) as feed:
            await feed.page(0, 10)
            clock[0] += 0.5 * ttl
            await feed.page(0, 10)  # still the first token
            clock[0] += 0.4 * ttl  # past 80 % of its lifetime: a new one first
            await feed.page(0, 10)
    issued = [r for r in caplog.records if "service_token_issued" in r.getMessage()]
    assert len(issued) == 2


async def test_refused_credentials_and_an_unreachable_feed_raise(
    base_url: str, isolated_auth_settings: AuthSettings
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    client_id, secret = await new_service_client(isolated_auth_settings, name)
    async with HttpFeedLog.with_client_credentials(base_url, client_id, "wrong") as feed:
        with pytest.raises(FeedAuthError, match="invalid_client"):
            await feed.head()
    async with HttpFeedLog(f"{base_url}/events", "not a token") as feed:
        with pytest.raises(FeedAuthError, match="401"):
            await feed.page(0, 10)
    async with HttpFeedLog.with_client_credentials(base_url, client_id, secret) as feed:
        await feed.head()
        await revoke(isolated_auth_settings, name)
        # Refused with its token, refused a new one: the revocation holds.
        with pytest.raises(FeedAuthError, match="invalid_client"):
            await feed.head()
    async with HttpFeedLog(f"http://127.0.0.1:{free_port()}/events", "t") as feed:
        with pytest.raises(FeedUnavailableError):
            await feed.head()


async def test_a_service_token_is_refused_by_downstream_verifiers(
    base_url: str, api: httpx.AsyncClient, isolated_auth_settings: AuthSettings
) -> None:
    token = await service_token(api, *await new_service_client(isolated_auth_settings))
    verifier = JwksVerifier(
        f"{base_url}/.well-known/jwks.json",
        issuer=isolated_auth_settings.jwt_issuer,
        audience=isolated_auth_settings.jwt_audience,
    )
    async with verifier:
        with pytest.raises(TokenRejectedError, match="another audience"):
            await verifier.verify(token)


def _stand_in(status: int, body: bytes, content_type: str) -> Any:
    """An HTTP server answering every request alike: a feed that fails or misbehaves."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error"),
    [
        (503, b"{}", "application/json", FeedUnavailableError),
        (500, b"oops", "text/plain", FeedUnavailableError),
        (200, b'{"entries": [], "next": 0, "caught_up": true}', "application/json", FeedError),
        (200, b'{"position":1,"event"\n{"next":1}\n', "application/x-ndjson", FeedError),
        (404, b'{"detail": "Not Found"}', "application/json", FeedError),
    ],
)
async def test_a_failing_or_malformed_feed_raises(
    status: int, body: bytes, content_type: str, error: type[FeedError]
) -> None:
    async with served(_stand_in(status, body, content_type)) as url:
        feed = HttpFeedLog(f"{url}/events", "token")
        with pytest.raises(error):
            await feed.page(0, 10)
        await feed.close()
