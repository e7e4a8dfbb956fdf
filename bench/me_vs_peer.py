"""GET /users/me req/s and p99: userbus against fastapi-users 15, one wrk load, a process each."""

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import psutil
from _common import (
    Scratch,
    make_parser,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
    with_database,
)
from _peer import DEFAULT_VENV, ensure_peer_venv, peer_server, peer_token
from _wrk import WrkResult, run_wrk
from registration import PASSWORD, api_server

TARGET_RATIO = 3.0
TARGET_P99_MS = 50.0
PATH = "/users/me"


@asynccontextmanager
async def peer_database(args: argparse.Namespace, space: Scratch) -> AsyncIterator[str]:
    """An empty database of the peer's own beside the run's; dropped at the end."""
    name = f"userbus_bench_{space.run_id}_peer"
    admin = await asyncpg.connect(args.database_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(args.database_admin_url, name)
    finally:
        admin = await asyncpg.connect(args.database_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def userbus_token(base_url: str, username: str) -> str:
    """Register `username` with userbus and log in: its bearer access token."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0) as client:
        body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
        registered = await client.post("/users", json=body)
        if registered.status_code != 201:
            raise RuntimeError(f"POST /users answered {registered.status_code}")
        login = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
        if login.status_code != 200:
            raise RuntimeError(f"POST /auth/login answered {login.status_code}")
        token: str = login.json()["access_token"]
        return token


async def few_at_a_time(
    sign_up: Callable[[str, str], Awaitable[str]], base_url: str, names: list[str]
) -> list[str]:
    """The tokens of `names`, signed up a few at a time (each costs two bcrypt hashes)."""
    gate = asyncio.Semaphore(4)

    async def one(name: str) -> str:
        async with gate:
            return await sign_up(base_url, name)

    return list(await asyncio.gather(*(one(name) for name in names)))


async def check_me(base_url: str, token: str) -> None:
    """Fail unless /users/me answers 200 with the token and 401 without it."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0) as client:
        good = await client.get(PATH, headers={"authorization": f"Bearer {token}"})
        anonymous = await client.get(PATH)
    if (good.status_code, anonymous.status_code) != (200, 401):
        raise RuntimeError(
            f"{base_url}{PATH} answered {good.status_code} / {anonymous.status_code}"
        )


def server_process(base_url: str) -> psutil.Process:
    """The process listening on the base URL's port (the server's CPU time is read from it)."""
    port = int(base_url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU seconds the process (all its threads) has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def show_turn(label: str, result: WrkResult, cpu: float) -> None:
    """One wrk run's figures, with its socket errors and non-2xx answers if it had any."""
    failures = ""
    if result.errors or result.non_2xx:
        failures = f", {result.errors} socket errors, {result.non_2xx} non-2xx"
    show_text(
        label,
        f"{result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms, "
        f"server CPU {cpu / max(result.requests, 1) * 1e6:,.0f} us/request{failures}",
    )


async def main(args: argparse.Namespace) -> float:
    """Alternate wrk turns on both servers; print their req/s, p99 and the ratio."""
    versions = await ensure_peer_venv(args.peer_venv)
    show_text("peer: fastapi-users, its fastapi", versions.replace(" ", ", "))
    show_text(
        "wrk load",
        f"{args.connections} connections, {args.threads} threads, "
        f"{args.seconds:g} s a turn, {args.repeats} turns each, timeout {args.timeout:g} s",
    )
    show_text("users (requests take their tokens in turn)", str(args.users))
    show_load("at start")
    results: dict[str, list[WrkResult]] = {"userbus": [], "fastapi-users": []}
    cpu_used = dict.fromkeys(results, 0.0)
    async with scratch(args) as space, peer_database(args, space) as peer_url:
        with (
            tempfile.TemporaryDirectory(prefix="userbus-bench-") as ours_dir,
            tempfile.TemporaryDirectory(prefix="userbus-bench-peer-") as peer_dir,
        ):
            async with (
                api_server(space, args.rounds, Path(ours_dir)) as ours,
                peer_server(args.peer_venv, peer_url, Path(peer_dir)) as theirs,
            ):
                names = [f"me{space.run_id}_{index}" for index in range(args.users)]
                servers = {
                    "userbus": (ours, await few_at_a_time(userbus_token, ours, names)),
                    "fastapi-users": (
                        theirs,
                        await few_at_a_time(
                            peer_token, theirs, [f"{name}@example.com" for name in names]
                        ),
                    ),
                }
                for side in args.skip:
                    del servers[side]
                    del results[side]
                for base_url, tokens in servers.values():
                    for token in tokens:
                        await check_me(base_url, token)
                processes = {side: server_process(url) for side, (url, _) in servers.items()}
                for turn in range(args.warmup_turns + args.repeats):
                    for side, (base_url, tokens) in servers.items():
                        warming = turn < args.warmup_turns
                        cpu_before = cpu_seconds(processes[side])
                        result = await run_wrk(
                            base_url + PATH,
                            connections=args.connections,
                            threads=args.threads,
                            seconds=args.warmup_seconds if warming else args.seconds,
                            bearer_tokens=tokens,
                            timeout_seconds=args.timeout,
                        )
                        cpu = cpu_seconds(processes[side]) - cpu_before
                        label = "warm-up" if warming else f"turn {turn - args.warmup_turns + 1}"
                        show_turn(f"{side} {label}", result, cpu)
                        if not warming:
                            results[side].append(result)
                            cpu_used[side] += cpu
    show_load("at end")
    rates = {}
    for side, runs in results.items():
        rates[side] = sum(r.requests for r in runs) / sum(r.seconds for r in runs)
        show(f"{side} GET {PATH}", rates[side], "req/s")
        show(f"{side} p99 (worst turn)", max(r.p99_ms for r in runs), "ms")
        requests = sum(r.requests for r in runs)
        show(f"{side} server CPU per request", cpu_used[side] / requests * 1e6, "us")
        failed = sum(r.errors + r.non_2xx for r in runs)
        show_text(f"{side} socket errors and non-2xx", f"{failed:,} of {requests:,}")
    if len(results) < 2:
        return 0.0
    p99 = max(r.p99_ms for r in results["userbus"])
    show_ratio(
        f"userbus p99 / {TARGET_P99_MS:.0f} ms", p99 / TARGET_P99_MS, "< 1", p99 < TARGET_P99_MS
    )
    ratio = rates["userbus"] / rates["fastapi-users"]
    show_ratio(
        "ratio userbus / fastapi-users req/s", ratio, f">= {TARGET_RATIO}", ratio >= TARGET_RATIO
    )
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default: 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default: 2)")
    parser.add_argument(
        "--seconds", type=float, default=10, help="seconds of each measured turn (default: 10)"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="measured turns of each server (default: 2)"
    )
    parser.add_argument(
        "--warmup-turns", type=int, default=1, help="unmeasured turns first (default: 1)"
    )
    parser.add_argument(
        "--warmup-seconds", type=float, default=3, help="seconds of a warm-up turn (default: 3)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10,
        help="wrk's per-request timeout, s; a slower request counts as an error (default: 10)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=1,
        help="users on each side; wrk's requests take their tokens in turn (default: 1)",
    )
    parser.add_argument(
        "--rounds", type=int, default=12, help="userbus's bcrypt cost (default: 12)"
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["userbus", "fastapi-users"],
        help="measure only the other server (for diagnosis; no ratio then)",
    )
    parser.add_argument(
        "--peer-venv",
        type=Path,
        default=DEFAULT_VENV,
        help="virtualenv for fastapi-users, made if missing (default: %(default)s)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
