"""Registration throughput over HTTP as a ratio to raw bcrypt hashes/s on all cores."""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import bcrypt
import httpx
from _common import (
    Scratch,
    cores,
    free_port,
    make_parser,
    percentile,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)

TARGET_RATIO = 0.9
STARTUP_SECONDS = 60.0
PASSWORD = "correct horse battery staple"
NO_LIMIT = str(10**9)


def bcrypt_seconds(count: int, rounds: int, threads: int) -> float:
    """Seconds to hash `count` passwords on `threads` threads, salting each as the service does."""

    def hash_one(index: int) -> bytes:
        return bcrypt.hashpw(f"{PASSWORD} {index}".encode(), bcrypt.gensalt(rounds))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        started = time.perf_counter()
        list(pool.map(hash_one, range(count)))
        return time.perf_counter() - started


@asynccontextmanager
async def api_server(space: Scratch, rounds: int, data_dir: Path) -> AsyncIterator[str]:
    """Run `userbus api` in its own process on a free port; yield its base URL once healthy."""
    port = free_port()
    env = {
        # Every registration comes from this one host: its limit (20 an hour) would make the
        # run measure 429s. Each still counts in Redis and mails its verification token.
        # A caller's environment (login_flood.py) may set these too.
        "USERBUS_REDIS_URL": space.redis_url,
        "USERBUS_REDIS_KEY_PREFIX": f"userbus.bench.{space.run_id}",
        "USERBUS_REGISTRATION_LIMIT_PER_ADDRESS": NO_LIMIT,
        "USERBUS_MAIL_LIMIT_PER_ADDRESS": NO_LIMIT,
        **os.environ,
        "USERBUS_DATABASE_URL": space.database_url,
        "USERBUS_BCRYPT_ROUNDS": str(rounds),
        "USERBUS_DATA_DIR": str(data_dir),
        "USERBUS_LOG_LEVEL": "WARNING",
    }
    log_path = data_dir / "api.log"
    with log_path.open("wb") as log:
        # cwd is the temp dir, so no stray .env of the working tree configures the server.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "userbus",
            "api",
            "--port",
            str(port),
            env=env,
            cwd=data_dir,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base_url, process, log_path)
        yield base_url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_healthy(base_url: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
    """Poll GET /healthz until it answers 200; fail with the server's log if it died."""
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                log = await asyncio.to_thread(log_path.read_text, errors="replace")
                raise RuntimeError(f"the API exited with {process.returncode}:\n{log}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the API did not become healthy within {STARTUP_SECONDS:.0f} s")


def usernames(prefix: str) -> Iterator[str]:
    """Endless unique usernames (at most 32 characters, as the API requires)."""
    index = 0
    while True:
        index += 1
        yield f"{prefix}_{index}"


async def register_many(
    client: httpx.AsyncClient, names: Iterator[str], count: int, concurrency: int
) -> list[float]:
    """POST /users `count` times from `concurrency` workers; each request's seconds."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            name = next(names)
            started = time.perf_counter()
            response = await client.post(
                "/users",
                json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise RuntimeError(f"POST /users answered {response.status_code}: {response.text}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


@asynccontextmanager
async def api_client(args: argparse.Namespace, space: Scratch) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the API running in a subprocess with its own data directory."""
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    with tempfile.TemporaryDirectory(prefix="userbus-bench-") as data_dir:
        async with (
            api_server(space, args.rounds, Path(data_dir)) as base_url,
            httpx.AsyncClient(base_url=base_url, limits=limits, timeout=600.0) as client,
        ):
            yield client


async def main(args: argparse.Namespace) -> float:
    """Measure raw bcrypt and HTTP registrations in turns; print both and their ratio."""
    threads = cores()
    hashes = args.baseline_hashes or args.count
    show_text("cores (bcrypt threads, API hash workers)", str(threads))
    show_text("bcrypt cost", str(args.rounds))
    show_text("HTTP concurrency", str(args.concurrency))
    show_load("at start")
    hash_seconds = http_seconds = 0.0
    latencies: list[float] = []
    async with scratch(args) as space, api_client(args, space) as client:
        names = usernames(f"b{space.run_id}")
        await register_many(client, names, args.warmup, args.concurrency)
        for repeat in range(1, args.repeats + 1):
            # Turns alternate (the idle server costs nothing meanwhile), so a change in the
            # machine's speed or load during the run weighs on both sides alike.
            hashing = await asyncio.to_thread(bcrypt_seconds, hashes, args.rounds, threads)
            started = time.perf_counter()
            latencies += await register_many(client, names, args.count, args.concurrency)
            registering = time.perf_counter() - started
            hash_seconds += hashing
            http_seconds += registering
            show_text(
                f"turn {repeat}",
                f"{hashes / hashing:.2f} hashes/s, {args.count / registering:.2f} registrations/s,"
                f" ratio {args.count / registering / (hashes / hashing):.3f}",
            )
    show_load("at end")
    baseline = hashes * args.repeats / hash_seconds
    rate = args.count * args.repeats / http_seconds
    show(f"raw bcrypt ({args.repeats} x {hashes} hashes)", baseline, "hashes/s", 2)
    show(f"registrations over HTTP ({args.repeats} x {args.count})", rate, "registrations/s", 2)
    show("request latency median", percentile(latencies, 0.5) * 1000, "ms")
    show("request latency max", max(latencies) * 1000, "ms")
    ratio: float = rate / baseline
    met = ratio >= TARGET_RATIO
    show_ratio("ratio registrations/s / bcrypt hashes/s", ratio, f">= {TARGET_RATIO}", met)
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default: 12)")
    parser.add_argument(
        "--count", type=int, default=64, help="registrations per turn (default: 64)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4 * cores(),
        help="requests in flight (default: 4 x cores)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating turns of both (default: 3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=cores(), help="untimed registrations first (default: cores)"
    )
    parser.add_argument(
        "--baseline-hashes",
        type=int,
        default=0,
        help="raw bcrypt hashes per turn (default: --count)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
