"""Latency from a registration's commit to its profile row: relay and consumer run in-process."""

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from uuid import UUID

import asyncpg
import httpx
from _common import (
    Scratch,
    make_parser,
    percentile,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)
from redis.asyncio import Redis

from auth.main import create_app
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import envelope_from_json
from infra.redis.wire import STREAM_FIELD
from producers.main import create_relay
from producers.settings import RelaySettings

TARGET_P99_MS = 100.0
TIMEOUT_SECONDS = 10.0
PASSWORD = "correct horse battery staple"
_PROFILE_EXISTS = "SELECT 1 FROM profiles.profiles WHERE user_id = $1"


@dataclass(frozen=True)
class Sample:
    """One registration: its user, when it committed (wall clock) and how long to its profile."""

    user_id: UUID
    committed_at: float
    delay: float


@asynccontextmanager
async def pipeline(space: Scratch) -> AsyncIterator[str]:
    """The relay and the profile consumer, running on this event loop until the block ends."""
    stream = space.stream("users")
    relay = create_relay(
        RelaySettings(
            _env_file=None,
            database_url=space.database_url,
            broker_url=space.redis_url,
            stream=stream,
        )
    )
    consumer = create_consumer_app(
        ConsumerSettings(
            _env_file=None,
            database_url=space.database_url,
            broker_url=space.redis_url,
            stream=stream,
            consumer_name="bench",
        ),
        ProfileProjection(),
    )
    stop = asyncio.Event()
    await consumer.start()
    relaying = asyncio.create_task(relay.run(stop))
    try:
        yield stream
    finally:
        stop.set()
        await relaying
        await consumer.stop()


@asynccontextmanager
async def auth_client(space: Scratch, rounds: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real auth app, in-process, with its lifespan running."""
    with tempfile.TemporaryDirectory(prefix="userbus-bench-") as data_dir:
        settings = AuthSettings(
            _env_file=None,
            database_url=space.database_url,
            bcrypt_rounds=rounds,
            data_dir=Path(data_dir),
            # Every registration comes from one in-process client: no limit of its address.
            redis_url=space.redis_url,
            redis_key_prefix=f"userbus.bench.{space.run_id}",
            registration_limit_per_address=10**9,
            mail_limit_per_address=10**9,
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://auth.bench") as client,
        ):
            yield client


async def register_and_wait(
    client: httpx.AsyncClient, watcher: asyncpg.Connection, username: str, poll: float
) -> Sample:
    """Register one user and wait until its profile row is visible."""
    response = await client.post(
        "/users",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    # The registration committed before the response was sent: this is an upper bound of
    # the commit time, so the delay measured is, if anything, a little short.
    committed = time.perf_counter()
    committed_at = time.time()
    if response.status_code != 201:
        raise RuntimeError(f"POST /users answered {response.status_code}: {response.text}")
    user_id = UUID(response.json()["id"])
    while await watcher.fetchval(_PROFILE_EXISTS, user_id) is None:
        if time.perf_counter() - committed > TIMEOUT_SECONDS:
            raise RuntimeError(f"no profile for {username} after {TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(poll)
    return Sample(user_id, committed_at, time.perf_counter() - committed)


async def xadd_times(redis_url: str, stream: str) -> dict[UUID, float]:
    """When each user's event entered the stream (wall clock, from the entry id's ms part)."""
    redis = Redis.from_url(redis_url)
    try:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))
    finally:
        await redis.aclose()
    times = {}
    for entry_id, fields in entries:
        envelope = envelope_from_json(fields[STREAM_FIELD.encode()])
        times[envelope.user_id] = int(entry_id.split(b"-")[0]) / 1000
    return times


def show_distribution(title: str, milliseconds: list[float]) -> None:
    """Print mean, median, p95, p99 and max of a list of milliseconds."""
    show(f"{title} mean", statistics.fmean(milliseconds), "ms", 2)
    show(f"{title} median", percentile(milliseconds, 0.5), "ms", 2)
    show(f"{title} p95", percentile(milliseconds, 0.95), "ms", 2)
    show(f"{title} p99", percentile(milliseconds, 0.99), "ms", 2)
    show(f"{title} max", max(milliseconds), "ms", 2)


async def main(args: argparse.Namespace) -> float:
    """Register users one at a time and print the commit-to-profile delays."""
    show_text("users, pause between them", f"{args.count}, {args.pause * 1000:.0f} ms")
    show_text("poll interval", f"{args.poll * 1000:.1f} ms")
    show_load("at start")
    samples: list[Sample] = []
    async with scratch(args) as space:
        async with pipeline(space) as stream, auth_client(space, args.rounds) as client:
            watcher = await asyncpg.connect(space.database_url)
            try:
                for index in range(args.warmup + args.count):
                    username = f"l{space.run_id}_{index}"
                    sample = await register_and_wait(client, watcher, username, args.poll)
                    if index >= args.warmup:
                        samples.append(sample)
                    await asyncio.sleep(args.pause)
            finally:
                await watcher.close()
        entered = await xadd_times(space.redis_url, stream)
    show_load("at end")
    delays = [sample.delay * 1000 for sample in samples]
    show_distribution("commit -> profile row", delays)
    # Entry ids carry Redis's clock in whole ms, so each part is known to within 1 ms.
    to_stream = [(entered[s.user_id] - s.committed_at) * 1000 for s in samples]
    show("of which commit -> stream (relay) median", percentile(to_stream, 0.5), "ms", 2)
    to_profile = [d - r for d, r in zip(delays, to_stream, strict=True)]
    show("of which stream -> row (consumer) median", percentile(to_profile, 0.5), "ms", 2)
    ratio = percentile(delays, 0.99) / TARGET_P99_MS
    show_ratio(f"ratio p99 / {TARGET_P99_MS:.0f} ms", ratio, "< 1", ratio < 1)
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument("--count", type=int, default=200, help="measured users (default: 200)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured users first (default: 5)")
    parser.add_argument(
        "--pause", type=float, default=0.02, help="seconds between users (default: 0.02)"
    )
    parser.add_argument(
        "--poll", type=float, default=0.001, help="profile poll interval, s (default: 0.001)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="bcrypt cost of the registrations (default: 4)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
