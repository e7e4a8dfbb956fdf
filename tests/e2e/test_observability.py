"""`curl /metrics` on the API, the relay and a consumer, each a process of its own, while
users register and log in; their JSON logs; a request's traceparent reaching the consumer."""

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from auth.settings import AuthSettings
from infra.settings import asyncpg_dsn
from tests.conftest import TEST_BCRYPT_ROUNDS, free_port, unique_username
from tests.integration.helpers import STREAM_FIELD
from tests.integration.test_api_observability import TRACEPARENT, sample

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.slow]

PASSWORD = "a long passphrase"


@dataclass
class Process:
    """A `userbus` process, the HTTP client of its port, and the file its stderr goes to."""

    client: httpx.AsyncClient
    log: Path

    def records(self) -> list[dict[str, Any]]:
        """Its log's JSON lines (every line must parse)."""
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    async def metrics(self) -> str:
        """Its /metrics page."""
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return response.text


def _text(path: Path) -> str:
    return path.read_text()


@asynccontextmanager
async def userbus(
    args: list[str], env: dict[str, str], port: int, log: Path
) -> AsyncIterator[Process]:
    """`userbus ARGS` with `env`, once its /livez on `port` answers."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("USERBUS_")}
    full |= {"USERBUS_LOG_FORMAT": "json", **env}
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userbus", *args,
            env=full, cwd=log.parent, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, _text(log)
                try:
                    if (await client.get("/livez")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{args} did not come up: {_text(log)}"
                await asyncio.sleep(0.1)
            yield Process(client, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=20)


async def until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    """Wait until the awaited `check()` is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


@pytest.fixture
async def system(
    isolated_auth_settings: AuthSettings,
    redis_url: str,
    stream: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[Process, Process, Process]]:
    """The API, the relay and the profile consumer, each its own `userbus` process."""
    settings = isolated_auth_settings
    api_port, relay_port, consumer_port = free_port(), free_port(), free_port()
    shared = {
        "USERBUS_DATABASE_URL": settings.database_url,
        "USERBUS_BROKER_URL": redis_url,
        "USERBUS_STREAM": stream,
        "USERBUS_METRICS_SAMPLE_SECONDS": "0.2",
    }
    api_env = {
        **shared,
        "USERBUS_ENVIRONMENT": "test",
        "USERBUS_JWT_PRIVATE_KEY_FILE": str(settings.jwt_private_key_file),
        "USERBUS_BCRYPT_ROUNDS": str(TEST_BCRYPT_ROUNDS),
        "USERBUS_REDIS_URL": settings.redis_url,
        "USERBUS_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "USERBUS_DATA_DIR": str(tmp_path / "api"),
    }
    consumer_env = {
        **shared,
        "USERBUS_METRICS_PORT": str(consumer_port),
        "USERBUS_EVENT_LOG_URL": settings.database_url,
        "USERBUS_CONSUMER_GROUP": f"profiles-{stream[-10:]}",
        # Its per-event records (with their trace) are DEBUG; others' chatter is not needed.
        "USERBUS_LOG_LEVEL": "DEBUG",
    }
    async with (
        userbus(["api", "--port", str(api_port)], api_env, api_port, tmp_path / "api.log") as api,
        userbus(["relay"], {**shared, "USERBUS_METRICS_PORT": str(relay_port)}, relay_port,
                tmp_path / "relay.log") as relay,
        userbus(["consume", "profiles"], consumer_env, consumer_port,
                tmp_path / "consumer.log") as consumer,
    ):  # fmt: skip
        yield api, relay, consumer


async def test_metrics_move_and_a_requests_trace_reaches_the_consumers_log(
    system: tuple[Process, Process, Process],
    isolated_auth_settings: AuthSettings,
    redis_url: str,
    stream: str,
) -> None:
    api, relay, consumer = system
    for process in system:
        assert (await process.client.get("/readyz")).status_code == 200
    names = [unique_username() for _ in range(3)]
    ids = []
    for number, name in enumerate(names):
        response = await api.client.post(
            "/users",
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
            headers={"traceparent": TRACEPARENT, "X-Request-ID": f"e2e-{number}"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["x-request-id"] == f"e2e-{number}"
        ids.append(response.json()["id"])
    wrong = await api.client.post("/auth/login", json={"username": names[0], "password": "no!"})
    assert wrong.status_code == 401
    ok = await api.client.post("/auth/login", json={"username": names[0], "password": PASSWORD})
    assert ok.status_code == 200

    page = await api.metrics()
    assert sample(page, "userbus_http_requests_total", route="/users", status="201") == 3
    assert sample(page, "userbus_logins_total", outcome="invalid_credentials") == 1
    assert sample(page, "userbus_logins_total", outcome="success") == 1

    async def relayed() -> bool:
        page = await relay.metrics()
        return (
            sample(page, "userbus_relay_published_events_total") >= 3
            and 'userbus_relay_outbox_backlog{outbox="auth"} 0.0' in page
        )

    await until(relayed)
    assert sample(await relay.metrics(), "userbus_relay_oldest_unpublished_age_seconds") == 0

    async def applied() -> bool:
        page = await consumer.metrics()
        return (
            sample(page, "userbus_consumer_applied_events_total") >= 3
            and "userbus_consumer_lag_stream{" in page
            and sample(page, "userbus_consumer_lag_stream") == 0
            and "userbus_consumer_lag_log{" in page
            and sample(page, "userbus_consumer_lag_log") == 0
        )

    await until(applied)

    # The trace context went API -> outbox row -> stream entry -> the consumer's log record.
    conn = await asyncpg.connect(asyncpg_dsn(isolated_auth_settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT payload->>'traceparent' AS tp FROM auth.outbox WHERE subject = ANY($1::uuid[])",
            ids,
        )
    finally:
        await conn.close()
    assert [row["tp"] for row in rows] == [TRACEPARENT] * 3
    client = redis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    on_stream = [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in entries]
    assert {e["traceparent"] for e in on_stream if e["subject"] in ids} == {TRACEPARENT}
    settled = [
        r for r in consumer.records()
        if r.get("event_type") == "UserRegistered" and r.get("traceparent") == TRACEPARENT
    ]  # fmt: skip
    assert len(settled) >= 3
    assert settled[0]["trace_id"] == TRACEPARENT[3:35]
    assert {"time", "level", "logger", "message"} <= set(settled[0])

    # The API's own lines (uvicorn's access log among them) carry the request id.
    access = [r for r in api.records() if r.get("request_id") == "e2e-1"]
    assert access, _text(api.log)[-2000:]
    relay.records()  # the relay's log parses as JSON lines too
