"""Where GET /users/me spends its time: the ASGI app called in-process, timed and profiled.

Requests go straight to the app (no HTTP client, no server), so what is measured and
profiled is the app's own work: framework, dependencies, the bearer check, the response.
"""

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from _common import make_parser, percentile, scratch, setup_process, show, show_load, show_text

from auth.main import create_app
from auth.settings import AuthSettings

PASSWORD = "correct horse battery staple"
# Where a sample counts: under the innermost of these frames (file suffix, function name).
PARTS: list[tuple[str, str, str]] = [
    ("the bearer check's query (asyncpg)", "auth/adapters/principals.py", ""),
    ("the bearer check's query (asyncpg)", "auth/service_layer/unit_of_work.py", ""),
    ("the bearer check's query (asyncpg)", "auth/adapters/repository.py", ""),
    ("the bearer check's query (asyncpg)", "auth/adapters/sessions.py", ""),
    ("token signature and claims (PyJWT)", "auth/security/tokens.py", "verify"),
    ("token signature and claims (PyJWT)", "auth/security/token_cache.py", "verify"),
    ("response body (validation, serialisation)", "fastapi/routing.py", "serialize_response"),
    ("response body (validation, serialisation)", "auth/api/routes/users.py", "me"),
    ("dependency resolution (FastAPI)", "fastapi/dependencies/utils.py", "solve_dependencies"),
    ("framework (Starlette, FastAPI routing)", "fastapi/applications.py", "__call__"),
]


@asynccontextmanager
async def logged_in_app(database_url: str, username: str) -> AsyncIterator[tuple[Any, str]]:
    """The real auth app in-process (lifespan running), and a bearer token of one user."""
    with tempfile.TemporaryDirectory(prefix="userbus-bench-") as data_dir:
        settings = AuthSettings(
            _env_file=None, database_url=database_url, bcrypt_rounds=4, data_dir=Path(data_dir)
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://auth.bench") as client,
        ):
            body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
            created = await client.post("/users", json=body)
            if created.status_code != 201:
                raise RuntimeError(f"POST /users answered {created.status_code}: {created.text}")
            login = await client.post(
                "/auth/login", json={"username": username, "password": PASSWORD}
            )
            yield app, login.json()["access_token"]


def me_scope(token: str) -> dict[str, Any]:
    """The ASGI scope of `GET /users/me` with a bearer token, as uvicorn would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/me",
        "raw_path": b"/users/me",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench"),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def request_loop(app: Any, token: str, count: int, concurrency: int) -> list[float]:
    """Call the app with GET /users/me `count` times from `concurrency` workers; their seconds."""
    latencies: list[float] = []
    remaining = iter(range(count))
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def worker() -> None:
        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        for _ in remaining:
            started = time.perf_counter()
            await app(me_scope(token), receive, send)
            latencies.append(time.perf_counter() - started)
            if statuses.pop() != 200:
                raise RuntimeError("GET /users/me did not answer 200")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _part_of(frame: Any, current: str) -> str:
    path = frame.file_path or ""
    for label, suffix, function in PARTS:
        if path.endswith(suffix) and function in (frame.function or ""):
            return label
    return current


def show_parts(profiler: Any, requests: int) -> None:
    """Print the profile's wall time per request, split by the innermost part it ran under."""
    session = profiler.last_session
    root = session.root_frame() if session else None
    if root is None:
        return
    totals: dict[str, float] = {}
    pending = [(root, "event loop (idle: waiting for PostgreSQL) and the rest")]
    while pending:
        frame, current = pending.pop()
        label = _part_of(frame, current)
        own = frame.time - sum(child.time for child in frame.children)
        totals[label] = totals.get(label, 0.0) + own
        pending.extend((child, label) for child in frame.children)
    whole = sum(totals.values())
    for label, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        share = f"{seconds / requests * 1e6:8.1f} us/request ({seconds / whole:5.1%})"
        show_text(label, share)


async def main(args: argparse.Namespace) -> None:
    """Time the loop, then profile it with pyinstrument unless --no-profile."""
    show_load("at start")
    async with (
        scratch(args) as space,
        logged_in_app(space.database_url, f"p{space.run_id}") as (app, token),
    ):
        await request_loop(app, token, args.warmup, args.concurrency)
        started, cpu_started = time.perf_counter(), time.process_time()
        latencies = await request_loop(app, token, args.count, args.concurrency)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        show_text("requests, in flight", f"{args.count}, {args.concurrency}")
        show("requests/s", args.count / elapsed, "req/s")
        # CPU time is what the loop itself cost, whatever else the machine was doing.
        show("CPU per request (the app, this process)", cpu / args.count * 1e6, "us")
        show("latency median", percentile(latencies, 0.5) * 1000, "ms", 3)
        show("latency p99", percentile(latencies, 0.99) * 1000, "ms", 3)
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=args.interval, async_mode="disabled")
            profiler.start()
            await request_loop(app, token, args.count, args.concurrency)
            profiler.stop()
            if args.tree or args.flat:
                print(profiler.output_text(show_all=args.show_all, flat=args.flat))
            show_parts(profiler, args.count)
            if args.html:
                await asyncio.to_thread(Path(args.html).write_text, profiler.output_html())
    show_load("at end")


def parse_args() -> argparse.Namespace:
    """This script's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--count", type=int, default=3000, help="timed requests (default: 3000)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed first (default: 300)")
    parser.add_argument("--concurrency", type=int, default=1, help="in flight (default: 1)")
    parser.add_argument(
        "--profile", action=argparse.BooleanOptionalAction, default=True, help="run pyinstrument"
    )
    parser.add_argument(
        "--interval", type=float, default=0.001, help="pyinstrument's sampling interval, s"
    )
    parser.add_argument("--tree", action="store_true", help="print pyinstrument's call tree")
    parser.add_argument("--flat", action="store_true", help="print self time per function")
    parser.add_argument(
        "--show-all", action="store_true", help="print library frames pyinstrument hides"
    )
    parser.add_argument("--html", default=None, help="also write pyinstrument's HTML here")
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
