"""The API's probes, metrics, request ids and trace context, on the real PostgreSQL and Redis."""

import json
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from auth.settings import AuthSettings
from infra.settings import asyncpg_dsn
from tests.conftest import unique_username
from tests.integration.feed_helpers import new_service_client, service_token
from tests.integration.helpers import api_client, bearer, login, register
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def client(auth_settings: AuthSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on the session database."""
    async with api_client(auth_settings) as client:
        yield client


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text page (0 when it is not there)."""
    for line in metrics.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return 0.0


async def outbox_payload(settings: AuthSettings, user_id: str) -> dict[str, object]:
    """The payload of the user's first outbox row."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        raw = await conn.fetchval(
            "SELECT payload::text FROM auth.outbox WHERE subject = $1 ORDER BY id LIMIT 1", user_id
        )
    finally:
        await conn.close()
    payload: dict[str, object] = json.loads(raw)
    return payload


async def test_livez_and_readyz_answer_200_when_all_is_well(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "live"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "signing_key": "ok"},
    }
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics_count_requests_by_route_logins_by_outcome_and_429s(
    auth_settings: AuthSettings,
) -> None:
    settings = auth_settings.model_copy(update={"login_limit_per_username": 2})
    async with api_client(settings) as client:
        username = unique_username()
        await register(client, username)
        await login(client, username)
        for _ in range(3):  # two wrong passwords, then the limit answers 429
            await client.post("/auth/login", json={"username": username, "password": "wrong!"})
        await client.get(f"/users/{username}")
        await client.get("/no/such/path")
        page = (await client.get("/metrics")).text
    assert sample(page, "userbus_http_requests_total", route="/users", status="201") == 1
    assert sample(page, "userbus_logins_total", outcome="success") == 1
    assert sample(page, "userbus_logins_total", outcome="invalid_credentials") == 2
    assert sample(page, "userbus_logins_total", outcome="rate_limited") == 1
    assert sample(page, "userbus_http_rate_limited_total", route="/auth/login") == 1
    # The route template, never the path: one series however many users are asked for.
    assert sample(page, "userbus_http_requests_total", route="/users/{username}") == 1
    assert sample(page, "userbus_http_requests_total", route="unmatched", status="404") == 1
    count = sample(page, "userbus_http_request_duration_seconds_count", route="/auth/login")
    assert count == 4
    assert "userbus_password_hash_queue_depth 0.0" in page


async def test_two_apps_count_apart(auth_settings: AuthSettings) -> None:
    async with api_client(auth_settings) as first, api_client(auth_settings) as second:
        await first.get("/livez")
        await first.get("/livez")
        await second.get("/livez")
        assert sample((await first.get("/metrics")).text, "userbus_http_requests_total",
                      route="/livez") == 2  # fmt: skip
        assert sample((await second.get("/metrics")).text, "userbus_http_requests_total",
                      route="/livez") == 1  # fmt: skip


async def test_a_well_formed_request_id_is_echoed_and_a_bad_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    given = await client.get("/livez", headers={"X-Request-ID": "req-42.a:b"})
    assert given.headers["x-request-id"] == "req-42.a:b"
    for bad in ("has space", "x" * 129, "semi;colon"):
        answered = await client.get("/livez", headers={"X-Request-ID": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", answered.headers["x-request-id"])
    none = await client.get("/livez")
    assert re.fullmatch(r"[0-9a-f]{32}", none.headers["x-request-id"])


async def test_the_traceparent_of_a_request_is_on_its_event_in_the_outbox(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    body = await _register_with(client, headers)
    payload = await outbox_payload(auth_settings, body["id"])
    assert payload["traceparent"] == TRACEPARENT
    assert payload["tracestate"] == "vendor=abc"


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has no tail
    ],
)
async def test_an_invalid_traceparent_is_ignored_not_refused(
    client: httpx.AsyncClient, auth_settings: AuthSettings, traceparent: str
) -> None:
    body = await _register_with(client, {"traceparent": traceparent, "tracestate": "a=b"})
    payload = await outbox_payload(auth_settings, body["id"])
    assert "traceparent" not in payload
    assert "tracestate" not in payload


async def test_without_a_traceparent_the_event_has_none(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    body = await _register_with(client, {})
    assert "traceparent" not in await outbox_payload(auth_settings, body["id"])


async def _register_with(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    username = unique_username()
    response = await client.post(
        "/users",
        json={"username": username, "email": f"{username}@example.com",
              "password": "a long passphrase"},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_readyz_and_bearer_routes_answer_503_while_postgresql_is_unreachable(
    auth_settings: AuthSettings,
) -> None:
    target = urlsplit(auth_settings.database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.open()
    settings = auth_settings.model_copy(
        update={"database_url": _through(auth_settings.database_url, proxy.port)}
    )
    try:
        async with api_client(settings) as client:
            username = unique_username()
            await register(client, username)
            token = await login(client, username)
            feed_token = await service_token(client, *await new_service_client(settings))
            assert (await client.get("/users/me", headers=bearer(token))).status_code == 200
            assert (await client.get("/readyz")).status_code == 200

            await proxy.close()
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["detail"]["code"] == "not_ready"
            assert ready.json()["detail"]["message"] == "not ready: database"
            assert ready.json()["checks"]["redis"] == "ok"
            assert (await client.get("/livez")).status_code == 200  # alive all the same
            for path, auth in (("/users/me", token), ("/events", feed_token)):
                answer = await client.get(path, headers=bearer(auth))
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json()["detail"]["code"] == "database_unavailable"
                assert answer.headers["retry-after"] == "5"

            await proxy.open()
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/users/me", headers=bearer(token))).status_code == 200
    finally:
        await proxy.close()


async def test_readyz_names_redis_when_it_does_not_answer(auth_settings: AuthSettings) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    await proxy.open()
    port = proxy.port
    await proxy.close()  # a port that nothing listens on
    settings = auth_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    async with api_client(settings) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"]["message"] == "not ready: redis"
    assert ready.json()["checks"]["database"] == "ok"
