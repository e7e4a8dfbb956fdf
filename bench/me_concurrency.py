"""GET /users/me on 500 concurrent connections for 30 s: every answer must be a 2xx, no errors."""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from _common import make_parser, scratch, setup_process, show, show_load, show_text
from _wrk import run_wrk
from me_vs_peer import check_me, cpu_seconds, few_at_a_time, server_process, userbus_token
from registration import api_server

PATH = "/users/me"


async def main(args: argparse.Namespace) -> bool:
    """Run the load; print the statuses, socket errors and latencies; True when all were 2xx."""
    show_text(
        "wrk load",
        f"{args.connections} connections, {args.threads} threads, {args.seconds:g} s, "
        f"timeout {args.timeout:g} s, {args.users} users",
    )
    show_load("at start")
    with tempfile.TemporaryDirectory(prefix="userbus-bench-") as data_dir:
        async with scratch(args) as space, api_server(space, args.rounds, Path(data_dir)) as url:
            names = [f"c{space.run_id}_{index}" for index in range(args.users)]
            tokens = await few_at_a_time(userbus_token, url, names)
            for token in tokens:
                await check_me(url, token)
            process = server_process(url)
            before = cpu_seconds(process)
            result = await run_wrk(
                url + PATH,
                connections=args.connections,
                threads=args.threads,
                seconds=args.seconds,
                timeout_seconds=args.timeout,
                count_statuses=True,
                bearer_tokens=tokens,
            )
            cpu = cpu_seconds(process) - before
    show_load("at end")
    show("requests", result.requests, "", 0)
    show("requests/s", result.requests_per_second, "req/s")
    show("latency p50", result.p50_ms, "ms")
    show("latency p99", result.p99_ms, "ms")
    show("latency max", result.max_ms, "ms")
    show("server CPU per request", cpu / max(result.requests, 1) * 1e6, "us")
    show_text(
        "statuses", ", ".join(f"{code}: {n:,}" for code, n in sorted(result.statuses.items()))
    )
    show_text("socket errors", ", ".join(f"{kind} {n}" for kind, n in result.socket_errors.items()))
    ok = result.errors == 0 and result.non_2xx == 0 and sum(result.statuses.values()) > 0
    verdict = "met" if ok else "NOT met"
    show_text("0 errors, 0 non-2xx", f"{result.errors} errors, {result.non_2xx} non-2xx: {verdict}")
    return ok


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--connections", type=int, default=500, help="wrk -c (default: 500)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default: 2)")
    parser.add_argument("--seconds", type=float, default=30, help="load length (default: 30)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10,
        help="wrk's per-request timeout, s; a request slower than this is an error (default: 10)",
    )
    parser.add_argument(
        "--users", type=int, default=8, help="users whose tokens requests take in turn (default: 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="bcrypt cost of the sign-ups (default: 4)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    sys.exit(0 if asyncio.run(main(parse_args())) else 1)
