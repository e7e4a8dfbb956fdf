"""GET /events: who may read it, pages in commit-safe order, long-polling, one user's events."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth.settings import AuthSettings
from infra.settings import asyncpg_dsn
from tests.conftest import unique_username
from tests.integration.feed_helpers import (
    insert_registration,
    new_service_client,
    revoke,
    service_token,
)
from tests.integration.helpers import api_client, bearer, login, register
from userbus.admin import create_first_admin

pytestmark = pytest.mark.integration
PASSWORD = "a long passphrase"


@pytest.fixture
async def client(isolated_auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on this test's own database (its outbox holds only our events)."""
    async with api_client(isolated_auth_settings) as client:
        yield client


@pytest.fixture
async def token(client: httpx.AsyncClient, isolated_auth_settings: AuthSettings) -> str:
    """A service token of a new service client."""
    return await service_token(client, *await new_service_client(isolated_auth_settings))


@pytest.fixture
async def shared(auth_settings: AuthSettings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of the app on the session's database and a service token, for what needs no
    outbox of its own."""
    async with api_client(auth_settings) as client:
        yield client, await service_token(client, *await new_service_client(auth_settings))


async def outbox(settings: AuthSettings) -> list[tuple[int, dict[str, Any]]]:
    """Every row of the outbox, by position, with its envelope."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch("SELECT id, payload::text FROM auth.outbox ORDER BY id")
    finally:
        await conn.close()
    return [(row[0], json.loads(row[1])) for row in rows]


async def test_the_feed_refuses_anonymous_callers_bad_tokens_and_users_tokens(
    client: httpx.AsyncClient, isolated_auth_settings: AuthSettings
) -> None:
    user = unique_username()
    await register(client, user)
    admin = unique_username("admin")
    await create_first_admin(
        isolated_auth_settings, username=admin, email=f"{admin}@example.com", password=PASSWORD
    )
    forged = jwt.encode(
        {"sub": "x", "scope": "events:read", "role": "service"},
        ed25519.Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
    )
    user_id = (await client.get("/users/me", headers=bearer(await login(client, user)))).json()
    for path in ("/events", "/events/head", f"/events/users/{user_id['id']}"):
        assert (await client.get(path)).status_code == 401
        for bad in ("garbage", forged):
            refused = await client.get(path, headers=bearer(bad))
            assert refused.status_code == 401, path
            assert refused.json()["detail"]["code"] == "not_authenticated"
        basic = await client.get(path, auth=(user, PASSWORD))
        assert basic.status_code == 401
        for name in (user, admin):
            answer = await client.get(path, headers=bearer(await login(client, name, PASSWORD)))
            assert answer.status_code == 403, (path, name)
            assert answer.json()["detail"]["code"] == "permission_denied"
            assert "entries" not in answer.text


async def test_a_service_token_without_the_events_scope_is_refused(
    shared: tuple[httpx.AsyncClient, str], auth_settings: AuthSettings
) -> None:
    client, _ = shared
    other = await new_service_client(auth_settings, scope="profiles:read")
    token = await service_token(client, *other)
    refused = await client.get("/events", headers=bearer(token))
    assert refused.status_code == 403
    assert "events:read" in refused.json()["detail"]["message"]


async def test_a_service_token_reads_every_event_in_order_across_pages(
    client: httpx.AsyncClient, token: str, isolated_auth_settings: AuthSettings
) -> None:
    for _ in range(7):
        await register(client, unique_username())
    expected = await outbox(isolated_auth_settings)
    seen: list[tuple[int, dict[str, Any]]] = []
    url: str | None = "/events?limit=3"
    pages = 0
    while url is not None:
        response = await client.get(url, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        seen += [(entry["position"], entry["event"]) for entry in body["entries"]]
        pages += 1
        # The Link header names the next page: the same query, `after` moved on.
        link = response.headers["link"]
        assert link.endswith('>; rel="next"')
        next_url = httpx.URL(link[1 : link.index(">")])
        assert next_url.params["after"] == str(body["next"])
        assert next_url.params["limit"] == "3"
        url = None if body["caught_up"] else f"{next_url.path}?{next_url.query.decode()}"
    assert pages == 3
    # Every event, in position order, each exactly as the outbox holds it.
    assert seen == expected
    assert [event["specversion"] for _, event in seen] == ["1.0"] * 7
    last = await client.get(f"/events?after={expected[-1][0]}", headers=bearer(token))
    assert last.json() == {"entries": [], "next": expected[-1][0], "caught_up": True}
    head = await client.get("/events/head", headers=bearer(token))
    assert head.json() == {"head": expected[-1][0]}


async def test_the_feed_never_skips_a_late_committed_event(
    client: httpx.AsyncClient, token: str, isolated_auth_settings: AuthSettings
) -> None:
    await register(client, unique_username())
    start = (await client.get("/events/head", headers=bearer(token))).json()["head"]
    dsn = asyncpg_dsn(isolated_auth_settings.database_url)
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        slow = a.transaction()
        await slow.start()
        early = await insert_registration(a, uuid.uuid4())  # the smaller id, still open
        late = await insert_registration(b, uuid.uuid4())  # the larger id, committed
        assert start < early < late
        during = (await client.get(f"/events?after={start}", headers=bearer(token))).json()
        # B's event is committed, but handing it out would move the reader past A's.
        assert during["entries"] == []
        assert during["next"] < early
        await slow.commit()
        after = (await client.get(f"/events?after={during['next']}", headers=bearer(token))).json()
        assert [entry["position"] for entry in after["entries"]] == [early, late]
    finally:
        await a.close()
        await b.close()


async def test_a_read_during_a_short_transaction_waits_for_it(
    client: httpx.AsyncClient, token: str, isolated_auth_settings: AuthSettings
) -> None:
    dsn = asyncpg_dsn(isolated_auth_settings.database_url)
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        slow = a.transaction()
        await slow.start()
        early = await insert_registration(a, uuid.uuid4())
        late = await insert_registration(b, uuid.uuid4())
        reading = asyncio.create_task(client.get("/events", headers=bearer(token)))
        await asyncio.sleep(0.2)
        assert not reading.done()
        await slow.commit()
        body = (await reading).json()
        assert [entry["position"] for entry in body["entries"]] == [early, late]
    finally:
        await a.close()
        await b.close()


async def test_a_long_poll_returns_as_soon_as_an_event_is_committed(
    client: httpx.AsyncClient, token: str
) -> None:
    await register(client, unique_username())
    head = (await client.get("/events/head", headers=bearer(token))).json()["head"]
    started = time.monotonic()
    polling = asyncio.create_task(
        client.get(f"/events?after={head}&wait=20", headers=bearer(token))
    )
    await asyncio.sleep(0.5)
    assert not polling.done()
    name = unique_username()
    committed = time.monotonic()
    await register(client, name)
    body = (await polling).json()
    answered = time.monotonic()
    assert [entry["event"]["data"]["username"] for entry in body["entries"]] == [name]
    assert answered - started >= 0.5
    # Woken by the commit's NOTIFY, not by the end of the wait (nor the 1 s fallback poll).
    assert answered - committed < 0.9


async def test_a_long_poll_with_nothing_new_answers_an_empty_page_when_the_time_is_up(
    client: httpx.AsyncClient, token: str
) -> None:
    started = time.monotonic()
    response = await client.get("/events?wait=0.6", headers=bearer(token))
    assert time.monotonic() - started >= 0.6
    assert response.status_code == 200
    assert response.json()["entries"] == []


async def test_a_revoked_client_is_refused_at_once(
    client: httpx.AsyncClient, isolated_auth_settings: AuthSettings
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    client_id, secret = await new_service_client(isolated_auth_settings, name)
    token = await service_token(client, client_id, secret)
    assert (await client.get("/events", headers=bearer(token))).status_code == 200
    await revoke(isolated_auth_settings, name)
    # Its unexpired token stops working, and it gets no new one.
    refused = await client.get("/events", headers=bearer(token))
    assert refused.status_code == 401
    again = await client.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert again.status_code == 401
    assert again.json()["detail"]["code"] == "invalid_client"


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "limit=x", "after=-1", f"after={2**63}", "wait=31", "wait=-1",
     "wait=nan"],
)  # fmt: skip
async def test_bad_parameters_get_a_422_naming_them(
    shared: tuple[httpx.AsyncClient, str], query: str
) -> None:
    client, token = shared
    response = await client.get(f"/events?{query}", headers=bearer(token))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", query.split("=")[0]]


async def test_one_users_events_after_a_sequence(client: httpx.AsyncClient, token: str) -> None:
    name = unique_username()
    user_id = (await register(client, name))["id"]
    await register(client, unique_username())  # someone else's events are not included
    own = bearer(await login(client, name))
    await client.put(f"/users/{name}", json={"display_name": "Ada"}, headers=own)
    await client.put(f"/users/{name}", json={"display_name": "Ada L."}, headers=own)
    every = (await client.get(f"/events/users/{user_id}", headers=bearer(token))).json()
    assert [e["sequence"] for e in every["events"]] == [1, 2, 3]
    assert {e["subject"] for e in every["events"]} == {user_id}
    later = await client.get(f"/events/users/{user_id}?after_sequence=1", headers=bearer(token))
    assert [e["type"] for e in later.json()["events"]] == ["UserUpdated", "UserUpdated"]
    nobody = await client.get(f"/events/users/{uuid.uuid4()}", headers=bearer(token))
    assert nobody.json() == {"events": []}
    bad = await client.get("/events/users/not-a-uuid", headers=bearer(token))
    assert bad.status_code == 422


async def test_ndjson_pages_hold_the_same_entries_one_per_line(
    client: httpx.AsyncClient, token: str
) -> None:
    name = unique_username()
    await register(client, name)
    own = bearer(await login(client, name))
    # A newline inside an event stays escaped in its JSON: one line per entry still.
    await client.put(f"/users/{name}", json={"display_name": "two\nlines"}, headers=own)
    as_json = await client.get("/events?limit=1", headers=bearer(token))
    as_lines = await client.get(
        "/events?limit=1", headers={**bearer(token), "Accept": "application/x-ndjson"}
    )
    assert as_lines.headers["content-type"] == "application/x-ndjson"
    assert as_lines.headers["link"] == as_json.headers["link"]
    *entries, tail = [json.loads(line) for line in as_lines.text.splitlines()]
    assert entries == as_json.json()["entries"]
    assert tail == {"next": as_json.json()["next"], "caught_up": False}
    rest = await client.get(
        f"/events?after={tail['next']}", headers={**bearer(token), "Accept": "application/x-ndjson"}
    )
    lines = rest.text.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["event"]["data"]["display_name"] == "two\nlines"
    assert json.loads(lines[1])["caught_up"] is True
