"""GET /users/me latency while a flood of logins keeps every core busy with bcrypt (cost 12)."""

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from _common import (
    Scratch,
    cores,
    make_parser,
    percentile,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)
from registration import PASSWORD, api_server, bcrypt_seconds

TARGET_P99_MS = 50.0
# The flood's logins all succeed, but the limiter also counts attempts per address.
NO_LIMIT = "1000000"
TARGET_PATH = "/users/me"


@dataclass
class FloodResult:
    """What the flood process did: completed logins, their latencies, and the seconds it ran."""

    logins: int = 0
    failures: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass
class ProbeResult:
    """One probed path: each request's seconds, and how late the prober sent each."""

    path: str
    latencies: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)
    failures: int = 0


@dataclass
class PoolUse:
    """The API's connections to its database, sampled from pg_stat_activity."""

    samples: int = 0
    max_connections: int = 0
    max_active: int = 0


async def register_users(client: httpx.AsyncClient, prefix: str, count: int) -> list[str]:
    """Register `count` users concurrently; their usernames."""
    names = [f"{prefix}_{index}" for index in range(count)]

    async def one(name: str) -> None:
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        response = await client.post("/users", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /users answered {response.status_code}: {response.text}")

    await asyncio.gather(*(one(name) for name in names))
    return names


async def _flood(
    base_url: str, users: Sequence[str], concurrency: int, seconds: float
) -> FloodResult:
    result = FloodResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=600.0) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(index: int) -> None:
            body = {"username": users[index % len(users)], "password": PASSWORD}
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await client.post("/auth/login", json=body)
                result.latencies.append(time.perf_counter() - sent)
                if response.status_code == 200:
                    result.logins += 1
                else:
                    result.failures += 1

        await asyncio.gather(*(worker(index) for index in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def flood_process(
    base_url: str, users: list[str], concurrency: int, seconds: float, out: Any
) -> None:
    """The flood runs in its own process, so that it takes no CPU time from the prober's loop."""
    out.put(asyncio.run(_flood(base_url, users, concurrency, seconds)))


async def probe(
    client: httpx.AsyncClient, paths: Sequence[str], rate: float, seconds: float
) -> list[ProbeResult]:
    """GET each path `rate` times a second on a fixed plan, spread evenly between the paths.

    Open loop: a slow answer delays no later request, so slow answers are not under-sampled.
    """
    results = [ProbeResult(path) for path in paths]
    started = time.perf_counter()
    tasks = []

    async def one(result: ProbeResult, planned: float) -> None:
        sent = time.perf_counter()
        result.send_lag.append(sent - planned)
        response = await client.get(result.path)
        result.latencies.append(time.perf_counter() - sent)
        if response.status_code != 200:
            result.failures += 1

    for index in range(int(rate * seconds)):
        for offset, result in enumerate(results):
            planned = started + (index + offset / len(results)) / rate
            await asyncio.sleep(max(0.0, planned - time.perf_counter()))
            tasks.append(asyncio.create_task(one(result, planned)))
    await asyncio.gather(*tasks)
    return results


async def sample_pool(database_url: str, stop: asyncio.Event, use: PoolUse) -> None:
    """Count the API's connections (and the busy ones) every 50 ms until `stop`."""
    conn = await asyncpg.connect(database_url)
    try:
        while not stop.is_set():
            total, active = await conn.fetchrow(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            use.samples += 1
            use.max_connections = max(use.max_connections, total)
            use.max_active = max(use.max_active, active)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def cpu_usage(api: psutil.Process, flood: psutil.Process) -> dict[str, float]:
    """CPU seconds used so far: machine-wide, and by each part of this benchmark."""
    machine = psutil.cpu_times()
    loop_thread = other_threads = 0.0
    for thread in api.threads():
        spent = thread.user_time + thread.system_time
        if thread.id == api.pid:
            loop_thread += spent
        else:
            other_threads += spent

    def spent(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return times.user + times.system

    return {
        "whole machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        "API event loop thread": loop_thread,
        "API other threads (bcrypt, anyio)": other_threads,
        "flood client": spent(flood),
        "this prober": spent(psutil.Process()),
    }


def hot_threads(api: psutil.Process, interval: float) -> list[int]:
    """The API's threads that used over a third of a core during `interval` s: the hashers."""
    before = {t.id: t.user_time + t.system_time for t in api.threads()}
    time.sleep(interval)
    return [
        t.id
        for t in api.threads()
        if t.id != api.pid and t.user_time + t.system_time - before.get(t.id, 0.0) > interval / 3
    ]


def find_api() -> psutil.Process:
    """The API server: this process's child running `userbus api`."""
    for child in psutil.Process().children():
        if "userbus" in child.cmdline():
            return child
    raise RuntimeError("the API process was not found")


def show_probe(label: str, result: ProbeResult) -> None:
    """p50/p95/p99/max of one probed path in ms, and the prober's worst lateness."""
    values = result.latencies
    summary = ", ".join(
        f"{name} {percentile(values, fraction) * 1000:.1f}"
        for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    )
    show_text(
        f"{label} {result.path}",
        f"{summary}, max {max(values) * 1000:.1f} ms ({len(values)} requests,"
        f" {result.failures} not 200; prober late by up to {max(result.send_lag) * 1000:.1f} ms)",
    )


async def main(args: argparse.Namespace) -> float:
    """Register users, take the baselines, then probe /users/me during the flood; its p99."""
    threads = cores()
    show_text("cores (bcrypt threads, API hash workers)", str(threads))
    show_text("bcrypt cost", str(args.rounds))
    show_text("flood", f"{args.concurrency} logins in flight for {args.seconds:.0f} s")
    show_text("probe", f"GET {', '.join(args.paths)} at {args.rate:.0f}/s each")
    if args.hash_workers:
        show_text("diagnosis: API hash workers", str(args.hash_workers))
    if args.renice_hashers:
        show_text("diagnosis: nice of the API's hashing threads", str(args.renice_hashers))
    if args.prober_nice:
        show_text("diagnosis: nice of this prober", str(args.prober_nice))
        os.setpriority(os.PRIO_PROCESS, 0, args.prober_nice)
    show_load("at start")
    async with scratch(args) as space:
        # registration.api_server hands this environment on: setup_process removed the
        # caller's USERBUS_* variables, so these are all that configure the API beyond its own.
        os.environ["USERBUS_LOGIN_LIMIT_PER_USERNAME"] = NO_LIMIT
        os.environ["USERBUS_LOGIN_LIMIT_PER_ADDRESS"] = NO_LIMIT
        os.environ["USERBUS_REDIS_URL"] = space.redis_url
        os.environ["USERBUS_REDIS_KEY_PREFIX"] = f"userbus.bench.{space.run_id}"
        if args.hash_workers:
            os.environ["USERBUS_HASH_WORKERS"] = str(args.hash_workers)
        with tempfile.TemporaryDirectory(prefix="userbus-bench-") as data_dir:
            async with api_server(space, args.rounds, Path(data_dir)) as base_url:
                p99 = await run(args, space, base_url, threads)
    show_load("at end")
    return p99


async def run(args: argparse.Namespace, space: Scratch, base_url: str, threads: int) -> float:
    """The measurements against the running API; the p99 of GET /users/me in ms."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600.0) as setup:
        users = await register_users(setup, f"f{space.run_id}", args.users)
        (prober,) = await register_users(setup, f"p{space.run_id}", 1)
        response = await setup.post("/auth/login", json={"username": prober, "password": PASSWORD})
        response.raise_for_status()
        token = response.json()["access_token"]

    hashes = args.baseline_hashes
    baseline = hashes / await asyncio.to_thread(bcrypt_seconds, hashes, args.rounds, threads)

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600.0) as client:
        await probe(client, args.paths, args.rate, 1.0)  # warm-up: connections, caches
        idle = await probe(client, args.paths, args.rate, args.idle_seconds)

        api = find_api()
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        flood = context.Process(
            target=flood_process, args=(base_url, users, args.concurrency, args.seconds, out)
        )
        flood.start()
        # Probe only while the flood is at full strength: after its ramp, before its end.
        await asyncio.sleep(args.ramp / 2)
        if args.renice_hashers:
            for tid in await asyncio.to_thread(hot_threads, api, args.ramp / 2):
                os.setpriority(os.PRIO_PROCESS, tid, args.renice_hashers)
        else:
            await asyncio.sleep(args.ramp / 2)
        pool, stop = PoolUse(), asyncio.Event()
        sampling = asyncio.create_task(sample_pool(space.database_url, stop, pool))
        before, started = cpu_usage(api, psutil.Process(flood.pid)), time.perf_counter()
        busy = await probe(client, args.paths, args.rate, args.seconds - 2 * args.ramp)
        after, elapsed = cpu_usage(api, psutil.Process(flood.pid)), time.perf_counter() - started
        stop.set()
        await sampling
        result: FloodResult = await asyncio.to_thread(out.get)
        await asyncio.to_thread(flood.join)

    if result.failures:
        raise RuntimeError(f"{result.failures} logins of the flood did not answer 200")
    rate = result.logins / result.seconds
    show(f"raw bcrypt ({hashes} hashes on {threads} threads)", baseline, "hashes/s", 2)
    show("logins/s during the flood", rate, "logins/s", 2)
    show_ratio("ratio logins/s / raw bcrypt hashes/s", rate / baseline)
    show("login latency median", percentile(result.latencies, 0.5) * 1000, "ms")
    used = {part: (after[part] - before[part]) / elapsed * 100 for part in after}
    used["rest (PostgreSQL, Redis, anything else)"] = 2 * used["whole machine"] - sum(used.values())
    for part, percent in used.items():
        show(f"CPU {part}", percent, "% of one core", 0)
    show_text(
        "API database connections (max seen)",
        f"{pool.max_connections} open, {pool.max_active} busy at once ({pool.samples} samples)",
    )
    for probed in idle:
        show_probe("idle", probed)
    for probed in busy:
        show_probe("flood", probed)
    target = next(r for r in busy if r.path == TARGET_PATH)
    p99 = percentile(target.latencies, 0.99) * 1000
    met = p99 < TARGET_P99_MS
    show_ratio(f"GET {TARGET_PATH} p99 during the flood (ms)", p99, f"< {TARGET_P99_MS:.0f}", met)
    return p99


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default: 12)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="logins in flight (default: 32)"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the flood (default: 20)"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=2.0,
        help="seconds of the flood left unprobed at its start and at its end (default: 2)",
    )
    parser.add_argument(
        "--users", type=int, default=4, help="users the flood logs in as (default: 4)"
    )
    parser.add_argument(
        "--rate", type=float, default=10.0, help="probe requests/s per path (default: 10)"
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        default=[TARGET_PATH, "/healthz", "/.well-known/jwks.json"],
        help=f"paths probed; {TARGET_PATH} (token check and two queries) is the target,"
        " /healthz (one query) and the JWKS (no database) help tell where time goes",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="probe before the flood (default: 5)"
    )
    parser.add_argument(
        "--baseline-hashes", type=int, default=16, help="raw bcrypt hashes (default: 16)"
    )
    diagnosis = parser.add_argument_group("diagnosis (changes what runs; not the target setup)")
    diagnosis.add_argument(
        "--hash-workers", type=int, default=0, help="USERBUS_HASH_WORKERS of the API"
    )
    diagnosis.add_argument(
        "--renice-hashers",
        type=int,
        default=0,
        help="nice value given to the API's hashing threads once the flood runs",
    )
    diagnosis.add_argument(
        "--prober-nice",
        type=int,
        default=0,
        help="nice value of this prober (negative needs root): takes the client's own"
        " scheduling delays out of the figures",
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
