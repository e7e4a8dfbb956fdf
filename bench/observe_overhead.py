"""What ObservedRequests (request id, trace context, metrics) costs GET /users/me.

First in-process: two apps on one database, the same but for the middleware, called as ASGI
(no sockets) in alternating rounds; CPU per request of each. Then two API processes take wrk
turns in alternation; each side's req/s and server CPU per request, and the ratios.
"""

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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
from _wrk import WrkResult, run_wrk
from me_profile import logged_in_app, request_loop
from me_vs_peer import PATH, check_me, cpu_seconds, server_process, show_turn, userbus_token
from registration import wait_healthy

from auth.api.metrics import ApiMetrics
from auth.api.middleware import ObservedRequests

HERE = Path(__file__).resolve().parent


@asynccontextmanager
async def variant(space: Scratch, rounds: int, data_dir: Path, bare: bool) -> AsyncIterator[str]:
    """The API with (or, bare, without) the middleware in a process; its base URL.

    Both share `data_dir`, so the development signing key the first makes signs for both.
    """
    port = free_port()
    env = {
        **os.environ,
        "USERBUS_DATABASE_URL": space.database_url,
        "USERBUS_BCRYPT_ROUNDS": str(rounds),
        "USERBUS_DATA_DIR": str(data_dir),
        "USERBUS_LOG_LEVEL": "WARNING",
    }
    log_path = data_dir / f"api-{'bare' if bare else 'observed'}.log"
    command = [sys.executable, str(HERE / "_api_variant.py"), "--port", str(port)]
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, *(["--bare"] if bare else []),
            env=env, cwd=data_dir, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base_url, process, log_path)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=15)


async def middleware_alone(count: int) -> None:
    """The middleware around an app that answers at once, against that app alone."""
    route = type("Route", (), {"path": PATH})

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "GET", "headers": [(b"authorization", b"Bearer x")]}
    seconds = {}
    for name, app in (("bare", answer), ("observed", ObservedRequests(answer, ApiMetrics()))):
        started = time.process_time()
        for _ in range(count):
            await app(dict(scope), receive, send)
        seconds[name] = (time.process_time() - started) / count * 1e6
    show("middleware alone, CPU per request", seconds["observed"] - seconds["bare"], "us")


async def in_process(space: Scratch, args: argparse.Namespace) -> None:
    """CPU per request of the app with and without the middleware, called as ASGI."""
    cpu: dict[str, list[float]] = {"observed": [], "bare": []}
    async with (
        logged_in_app(space.database_url, f"ip{space.run_id}") as (observed, token),
        logged_in_app(space.database_url, f"ib{space.run_id}") as (bare, bare_token),
    ):
        # Taken out, and the stack (built by the login's requests) built again without it.
        bare.user_middleware = [m for m in bare.user_middleware if m.cls is not ObservedRequests]
        bare.middleware_stack = None
        apps = {"observed": (observed, token), "bare": (bare, bare_token)}
        for app, bearer in apps.values():
            await request_loop(app, bearer, args.count // 10, 1)  # warm-up, untimed
        for _ in range(args.rounds_in_process):
            for side, (app, bearer) in apps.items():
                started = time.process_time()
                await request_loop(app, bearer, args.count, 1)
                cpu[side].append((time.process_time() - started) / args.count * 1e6)
    for side, runs in cpu.items():
        show_text(f"in-process {side} CPU per request", ", ".join(f"{r:.1f}" for r in runs))
    middle = {side: statistics.median(runs) for side, runs in cpu.items()}
    show("in-process middleware CPU per request (medians)",
         middle["observed"] - middle["bare"], "us")  # fmt: skip
    show_ratio("in-process ratio observed / bare CPU per request",
               middle["observed"] / middle["bare"])  # fmt: skip


async def main(args: argparse.Namespace) -> float:
    """Alternate wrk turns on both variants; print their figures and the ratio."""
    show_text("wrk load", f"{args.connections} connections, {args.seconds:g} s a turn, "
              f"{args.repeats} turns each")  # fmt: skip
    show_load("at start")
    results: dict[str, list[WrkResult]] = {"observed": [], "bare": []}
    cpu_used = dict.fromkeys(results, 0.0)
    async with scratch(args) as space:
        await middleware_alone(args.count * 10)
        await in_process(space, args)
        with tempfile.TemporaryDirectory(prefix="userbus-obs-") as data_dir:
            async with (
                variant(space, args.rounds, Path(data_dir), bare=False) as observed,
                variant(space, args.rounds, Path(data_dir), bare=True) as bare,
            ):
                token = await userbus_token(observed, f"obs{space.run_id}")
                urls = {"observed": observed, "bare": bare}
                for url in urls.values():
                    await check_me(url, token)
                processes = {side: server_process(url) for side, url in urls.items()}
                for turn in range(1 + args.repeats):
                    for side, url in urls.items():
                        before = cpu_seconds(processes[side])
                        result = await run_wrk(
                            url + PATH, connections=args.connections, threads=2,
                            seconds=3 if turn == 0 else args.seconds,
                            bearer_tokens=[token], timeout_seconds=10,
                        )  # fmt: skip
                        cpu = cpu_seconds(processes[side]) - before
                        show_turn(f"{side} {'warm-up' if turn == 0 else f'turn {turn}'}",
                                  result, cpu)  # fmt: skip
                        if turn:
                            results[side].append(result)
                            cpu_used[side] += cpu
    show_load("at end")
    rates, cpu_per = {}, {}
    for side, runs in results.items():
        requests = sum(r.requests for r in runs)
        rates[side] = requests / sum(r.seconds for r in runs)
        cpu_per[side] = cpu_used[side] / requests * 1e6
        show(f"{side} GET {PATH}", rates[side], "req/s")
        show(f"{side} server CPU per request", cpu_per[side], "us")
    show(
        "middleware CPU per request (observed - bare)", cpu_per["observed"] - cpu_per["bare"], "us"
    )
    show_ratio("ratio observed / bare req/s", rates["observed"] / rates["bare"])
    ratio = cpu_per["observed"] / cpu_per["bare"]
    show_ratio("ratio observed / bare server CPU per request", ratio)
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default: 32)")
    parser.add_argument("--seconds", type=float, default=10, help="a measured turn, s")
    parser.add_argument("--repeats", type=int, default=3, help="measured turns per side")
    parser.add_argument("--rounds", type=int, default=4, help="bcrypt cost (login only)")
    parser.add_argument("--count", type=int, default=3000, help="in-process requests a round")
    parser.add_argument("--rounds-in-process", type=int, default=4, help="in-process rounds")
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
