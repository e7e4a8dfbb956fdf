"""Shared setup of the benchmarks: options, a throwaway database and streams, printed figures."""

import argparse
import asyncio
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from redis.asyncio import Redis

from auth.migrations import upgrade
from producers.relay import OutboxRelay

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LABEL_WIDTH = 44


def make_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--database-admin-url",
        default=DEFAULT_ADMIN_URL,
        help="a PostgreSQL URL allowed to CREATE and DROP DATABASE (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="Redis URL (default: %(default)s)"
    )
    return parser


def cores() -> int:
    """The number of CPU cores the benchmarks size their thread pools and load by."""
    return os.cpu_count() or 1


def setup_process() -> None:
    """Quiet logging, and no USERBUS_* variables: only the benchmark configures what it runs."""
    for key in [key for key in os.environ if key.startswith("USERBUS_")]:
        del os.environ[key]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    """The same PostgreSQL URL pointing at database `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Scratch:
    """A run's own database (migrated) and the Redis streams it names, all removed at the end."""

    database_url: str
    redis_url: str
    run_id: str
    streams: list[str] = field(default_factory=list)

    def stream(self, purpose: str) -> str:
        """A stream name unique to this run; it is deleted when the run ends."""
        name = f"userbus.bench.{self.run_id}.{purpose}"
        self.streams.append(name)
        return name


@asynccontextmanager
async def scratch(args: argparse.Namespace) -> AsyncIterator[Scratch]:
    """Create and migrate `userbus_bench_<random>`; drop it and delete the streams afterwards."""
    run_id = secrets.token_hex(4)
    name = f"userbus_bench_{run_id}"
    admin = await asyncpg.connect(args.database_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    space = Scratch(with_database(args.database_admin_url, name), args.redis_url, run_id)
    try:
        await upgrade(space.database_url)
        yield space
    finally:
        if space.streams:
            redis = Redis.from_url(args.redis_url)
            try:
                await redis.delete(*space.streams)
            finally:
                await redis.aclose()
        admin = await asyncpg.connect(args.database_admin_url)
        try:
            # FORCE: a server process that did not shut down cleanly must not keep it alive.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (fraction 0.5 is the median, 0.99 the p99)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def show(label: str, value: float, unit: str, decimals: int = 1) -> None:
    """Print one figure as an aligned `label  value unit` line."""
    print(f"{label:<{LABEL_WIDTH}} {value:>12,.{decimals}f} {unit}")


def show_text(label: str, text: str) -> None:
    """Print one non-numeric fact as an aligned `label  text` line."""
    print(f"{label:<{LABEL_WIDTH}} {text}")


def show_ratio(label: str, value: float, target: str | None = None, met: bool = True) -> None:
    """Print a ratio, with its target and whether the target is met when it has one."""
    verdict = "" if target is None else f" (target {target}: {'met' if met else 'NOT met'})"
    print(f"{label:<{LABEL_WIDTH}} {value:>12.3f}{verdict}")


def show_load(when: str) -> None:
    """Print the machine's load average: other processes skew every figure here."""
    one, five, _ = os.getloadavg()
    show_text(f"load average {when} (1 / 5 min)", f"{one:.2f} / {five:.2f} on {cores()} cores")


async def relay_until_published(relay: OutboxRelay, count: int, timeout: float = 600.0) -> float:
    """Run the relay until it has published `count` events; the seconds it took."""
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    try:
        while relay.published < count:
            if task.done():
                raise RuntimeError(f"the relay stopped after {relay.published} events")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"the relay published only {relay.published} in time")
            await asyncio.sleep(0.005)
        return time.perf_counter() - started
    finally:
        stop.set()
        await task
