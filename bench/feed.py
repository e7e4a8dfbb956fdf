"""The event feed's throughput: the whole log paged over HTTP, as a ratio to PostgreSQL direct.

The API runs as `userbus api` in its own process. In one run, after seeding N events:
(a) direct: the same rows paged straight from PostgreSQL with asyncpg (`id > $1 LIMIT n`);
(b) HTTP: GET /events?after=..&limit=n with httpx, each body parsed as JSON, as any client
does; (c) HttpFeedLog.page, the EventLog a replay reads (it also turns each event back into
text). Every read must return every event once, in position order.
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from _common import (
    Scratch,
    free_port,
    make_parser,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)
from sqlalchemy.ext.asyncio import create_async_engine

from auth.bootstrap import build_service_clients
from auth.service_layer.service_clients import create_service_client
from infra.feed import HttpFeedLog
from infra.settings import sqlalchemy_url

STARTUP_SECONDS = 60.0
# UserRegistered envelopes shaped like the ones the auth service writes, one per new user.
_SEED = """
    WITH rows AS (
        SELECT i, gen_random_uuid() AS event_id, gen_random_uuid() AS subject,
               to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS at
        FROM generate_series(1, $1) AS i
    )
    INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at)
    SELECT event_id, subject, 1, 'UserRegistered',
           jsonb_build_object(
               'specversion', '1.0', 'id', event_id, 'source', '/userbus/auth',
               'type', 'UserRegistered', 'subject', subject, 'time', at,
               'datacontenttype', 'application/json', 'sequence', 1,
               'data', jsonb_build_object(
                   'user_id', subject, 'username', 'bench_user_' || i,
                   'email', 'bench_user_' || i || '@example.com', 'role', 'user',
                   'registered_at', at)),
           at::timestamptz
    FROM rows ORDER BY i
"""
_PAGE = "SELECT id, payload::text FROM auth.outbox WHERE id > $1 ORDER BY id LIMIT $2"


async def seed(space: Scratch, count: int) -> None:
    """N events in the outbox; nothing queued for a relay (none runs here)."""
    conn = await asyncpg.connect(space.database_url)
    try:
        await conn.execute(_SEED, count)
        await conn.execute("TRUNCATE auth.outbox_pending")
        await conn.execute("VACUUM ANALYZE auth.outbox")
    finally:
        await conn.close()


async def service_credentials(space: Scratch) -> tuple[str, str]:
    """A service client, as `userbus service create bench` makes it."""
    engine = create_async_engine(sqlalchemy_url(space.database_url))
    try:
        client, secret = await create_service_client(build_service_clients(engine), name="bench")
        return client.client_id, secret
    finally:
        await engine.dispose()


@asynccontextmanager
async def api_server(space: Scratch, data_dir: Path) -> AsyncIterator[str]:
    """`userbus api` in its own process on a free port; its base URL once healthy."""
    port = free_port()
    env = {
        **os.environ,
        "USERBUS_DATABASE_URL": space.database_url,
        "USERBUS_DATA_DIR": str(data_dir),
        "USERBUS_LOG_LEVEL": "WARNING",
    }
    with (data_dir / "api.log").open("wb") as log:
        # cwd is the temp dir, so no stray .env of the working tree configures the server.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userbus", "api", "--port", str(port),
            env=env, cwd=data_dir, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
            while True:
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not start: see {data_dir / 'api.log'}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield base_url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()


async def read_direct(database_url: str, limit: int) -> tuple[float, list[int]]:
    """Page the outbox with asyncpg; the seconds it took and the positions read."""
    conn = await asyncpg.connect(database_url)
    try:
        positions: list[int] = []
        started = time.perf_counter()
        while rows := await conn.fetch(_PAGE, positions[-1] if positions else 0, limit):
            positions += [row[0] for row in rows]
        return time.perf_counter() - started, positions
    finally:
        await conn.close()


async def read_http(
    base_url: str, credentials: tuple[str, str], limit: int
) -> tuple[float, list[int]]:
    """Page GET /events, parsing each body; the seconds it took and the positions read."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        grant = await client.post(
            "/auth/token", data={"grant_type": "client_credentials"}, auth=credentials
        )
        grant.raise_for_status()
        client.headers["Authorization"] = f"Bearer {grant.json()['access_token']}"
        await client.get("/events/head")  # a warm connection
        positions: list[int] = []
        after = 0
        started = time.perf_counter()
        while True:
            response = await client.get("/events", params={"after": after, "limit": limit})
            response.raise_for_status()
            body = response.json()
            positions += [entry["position"] for entry in body["entries"]]
            after = body["next"]
            if body["caught_up"]:
                return time.perf_counter() - started, positions


async def read_feed_log(feed: HttpFeedLog, limit: int) -> tuple[float, list[int]]:
    """Page HttpFeedLog; the seconds it took and the positions read."""
    positions: list[int] = []
    after = 0
    started = time.perf_counter()
    while True:
        page = await feed.page(after, limit)
        positions += [position for position, _ in page.rows]
        after = page.next
        if page.caught_up:
            return time.perf_counter() - started, positions


def check(name: str, positions: list[int], expected: list[int]) -> None:
    """Every event once, in order, or the run is void."""
    if positions != expected:
        raise RuntimeError(f"{name} read {len(positions)} events, not the {len(expected)} seeded")


async def main(args: argparse.Namespace) -> float:
    """Seed, read three ways, print the figures; the HTTP/direct ratio."""
    async with scratch(args) as space:
        await seed(space, args.events)
        client_id, secret = await service_credentials(space)
        with tempfile.TemporaryDirectory(prefix="userbus-bench-feed-") as tmp:
            async with api_server(space, Path(tmp)) as base_url:
                show_load("at start")
                direct_seconds, expected = await read_direct(space.database_url, args.limit)
                check("direct", expected, sorted(expected))
                async with HttpFeedLog.with_client_credentials(base_url, client_id, secret) as feed:
                    await feed.head()  # the token, and a warm connection
                    http_seconds, over_http = await read_http(
                        base_url, (client_id, secret), args.limit
                    )
                    check("GET /events", over_http, expected)
                    log_seconds, over_log = await read_feed_log(feed, args.limit)
                    check("HttpFeedLog", over_log, expected)
                show_load("at end")
    show_text("events, page size", f"{args.events:,}, {args.limit}")
    direct_rate = args.events / direct_seconds
    http_rate = args.events / http_seconds
    show("PostgreSQL direct (asyncpg pages)", direct_rate, "events/s", 0)
    show("GET /events over HTTP (httpx + JSON parse)", http_rate, "events/s", 0)
    show("HttpFeedLog.page (the EventLog)", args.events / log_seconds, "events/s", 0)
    ratio = http_rate / direct_rate
    show_ratio("ratio HTTP / direct", ratio)
    show_ratio("ratio HttpFeedLog / direct", (args.events / log_seconds) / direct_rate)
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--events", type=int, default=200_000, help="(default: 200000)")
    parser.add_argument("--limit", type=int, default=1000, help="page size (default: 1000)")
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
