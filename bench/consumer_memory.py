"""Memory of a profile consumer process while it applies 1,000,000 events, on Redis and Kafka.

The consumer runs as `python -m userbus consume profiles` in a process of its own, so that
its resident memory is its alone; this script publishes the events first (in chunks, never
holding them all), then samples the consumer's RSS as the projection fills. The rate it
samples is that of a real consumer process; `--kafka-members N` runs N processes in the
Kafka group (the scale-out path), their RSS summed.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass

import asyncpg
import psutil
from _common import Scratch, make_parser, scratch, setup_process, show, show_load, show_text
from _tansu import Tansu, tansu
from consumer_apply import check_profiles, make_messages, publish_kafka, publish_redis

# What "flat" means here: the highest RSS over the second half of the events may exceed the
# highest over the first half (pools, caches and Kafka's prefetch buffers filled by then) by
# at most this much. A leak of 64 bytes per event would exceed it over 1,000,000 events.
ALLOWED_GROWTH_MIB = 30.0
CHUNK = 50_000
SAMPLE_SECONDS = 0.5
TIMEOUT_SECONDS = 1800.0
_APPLIED = "SELECT count(*) FROM profiles.tracking"


@dataclass
class Sample:
    """The consumer's resident memory when the projection held `applied` events."""

    seconds: float
    applied: int
    rss_mib: float


async def publish(
    space: Scratch, kind: str, stream: str, broker: Tansu, args: argparse.Namespace
) -> None:
    """Publish `args.events` registrations in chunks, as the relay would have."""
    for first in range(0, args.events, CHUNK):
        messages = make_messages(min(CHUNK, args.events - first), first)
        if kind == "redis":
            await publish_redis(space.redis_url, stream, messages, appending=True)
        else:
            await publish_kafka(broker, stream, args.partitions, messages)


async def follow(
    space: Scratch, broker_url: str, stream: str, members: int, args: argparse.Namespace
) -> list[Sample]:
    """Run `members` consumer processes of one group until the projection holds every
    event; sample their RSS (summed)."""
    env = {
        **os.environ,
        "USERBUS_DATABASE_URL": space.database_url,
        "USERBUS_BROKER_URL": broker_url,
        "USERBUS_STREAM": stream,
        "USERBUS_CONSUMER_GROUP": f"profiles-memory-{uuid.uuid4().hex[:8]}",
        "USERBUS_CONSUMER_BATCH_SIZE": str(args.batch),
        "USERBUS_KAFKA_PARTITIONS": str(args.partitions),
        "USERBUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "USERBUS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "userbus", "consume", "profiles"]
    processes = [
        await asyncio.create_subprocess_exec(
            *command,
            env={**env, "USERBUS_CONSUMER_NAME": f"bench-{member}"},
            stdin=asyncio.subprocess.DEVNULL,
        )
        for member in range(members)
    ]
    watched = [psutil.Process(process.pid) for process in processes]
    conn = await asyncpg.connect(space.database_url)
    samples: list[Sample] = []
    started = time.perf_counter()
    try:
        applied = 0
        while applied < args.events:
            await asyncio.sleep(SAMPLE_SECONDS)
            for process in processes:
                if process.returncode is not None:
                    raise RuntimeError(f"a consumer exited with {process.returncode}")
            try:
                applied = await conn.fetchval(_APPLIED)
            except asyncpg.UndefinedTableError:
                applied = 0  # the consumer has not created its tables yet
            elapsed = time.perf_counter() - started
            rss = sum(member.memory_info().rss for member in watched)
            samples.append(Sample(elapsed, applied, rss / 2**20))
            if elapsed > TIMEOUT_SECONDS:
                raise RuntimeError(f"applied only {applied} of {args.events} in time")
    finally:
        await conn.close()
        for process in processes:
            if process.returncode is None:
                process.terminate()
            await process.wait()
    return samples


def report(kind: str, samples: list[Sample], events: int) -> bool:
    """Print the RSS at each tenth of the way, and whether it stayed flat; True if it did."""
    label = f"{kind}:"
    for tenth in range(1, 11):
        at = next(s for s in samples if s.applied >= events * tenth // 10)
        show(f"{label} RSS at {at.applied:>9,} applied", at.rss_mib, "MiB")
    first_half = max(s.rss_mib for s in samples if s.applied < events // 2)
    second_half = max(s.rss_mib for s in samples if s.applied >= events // 2)
    growth = second_half - first_half
    busy = [s for s in samples if 0 < s.applied < events]
    rate = (
        (busy[-1].applied - busy[0].applied) / (busy[-1].seconds - busy[0].seconds)
        if len(busy) > 1
        else 0.0
    )
    show(f"{label} peak RSS, first half", first_half, "MiB")
    show(f"{label} peak RSS, second half", second_half, "MiB")
    show(f"{label} growth", growth, "MiB")
    show(f"{label} applied (sampled)", rate, "events/s", 0)
    flat = growth <= ALLOWED_GROWTH_MIB
    verdict = "met" if flat else "NOT met"
    show_text(f"{label} memory flat", f"growth <= {ALLOWED_GROWTH_MIB:.0f} MiB: {verdict}")
    return flat


async def main(args: argparse.Namespace) -> bool:
    """Publish, consume and sample on each broker in turn."""
    show_text("events, batch, partitions", f"{args.events:,}, {args.batch}, {args.partitions}")
    show_load("at start")
    flat = True
    with tansu() as broker:
        for kind in args.brokers.split(","):
            async with scratch(args) as space:
                stream = space.stream(f"memory-{kind}")
                started = time.perf_counter()
                await publish(space, kind, stream, broker, args)
                show(f"{kind}: published in", time.perf_counter() - started, "s", 1)
                url = space.redis_url if kind == "redis" else broker.url
                # Several members of one group keep per-user order on Kafka only (a user's
                # events stay in one partition); Redis gets one.
                members = args.kafka_members if kind == "kafka" else 1
                samples = await follow(space, url, stream, members, args)
                await check_profiles(space, args.events)
                flat = (
                    report(
                        f"{kind} ({members} process{'es' if members > 1 else ''})",
                        samples,
                        args.events,
                    )
                    and flat
                )
    show_load("at end")
    return flat


if __name__ == "__main__":
    parser = make_parser(__doc__ or "")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="consumer_batch_size")
    parser.add_argument("--brokers", default="redis,kafka")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--kafka-members", type=int, default=1, help="consumer processes in the Kafka group"
    )
    setup_process()
    sys.exit(0 if asyncio.run(main(parser.parse_args())) else 1)
