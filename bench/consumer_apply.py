"""Apply rate of the profile projection from a Redis Stream and from a Kafka topic (Tansu)."""

import argparse
import asyncio
import resource
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from _common import (
    Scratch,
    make_parser,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)
from _tansu import Tansu, tansu
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from consumers.app import create_consumer_app
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, UserRegistered, event_from_envelope, to_envelope
from infra.kafka.admin import ensure_topic
from infra.kafka.publisher import cloudevent_headers
from infra.publishing import PendingEvent, TopicLayout
from infra.redis.wire import STREAM_FIELD

# Issue 5's targets for the apply rate, in events/s.
TARGETS = {"redis": 20_000.0, "kafka": 30_000.0}
TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 0.01
PUBLISH_BATCH = 1000
SOURCE = "/userbus/auth"
_PROFILES = "SELECT count(*) FROM profiles.profiles"


@dataclass(frozen=True)
class Message:
    """One pre-published event: its key (the user id), envelope JSON and CloudEvents headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Run:
    """How one consumer run went."""

    broker: str
    batch_size: int
    events: int
    startup: float  # from start() until the first batch was applied
    first_applied: int  # events in that first batch
    applying: float  # from the first applied batch to the last
    total: float  # from start() to the last
    cpu: float  # this process's CPU seconds over `total`
    broker_cpu: float | None  # Tansu's CPU seconds over `total`
    rss_before: float  # MiB resident when the consumer started
    rss_peak: float | None  # MiB, peak during the run (None where it cannot be reset)

    @property
    def rate(self) -> float:
        """Events/s applied once the first batch was in: start-up left out."""
        return (self.events - self.first_applied) / self.applying


def make_messages(count: int, first: int = 0) -> list[Message]:
    """`count` UserRegistered envelopes of distinct new users, as the relay would carry them."""
    registered = datetime.now(UTC)
    messages = []
    for i in range(first, first + count):
        event = UserRegistered(
            user_id=uuid.uuid4(),
            username=f"bench_user_{i}",
            email=f"bench_user_{i}@example.com",
            role="user",
            registered_at=registered,
        )
        envelope = to_envelope(event, sequence=1, source=SOURCE, time=registered)
        messages.append(
            Message(
                key=envelope.subject.encode(),
                value=envelope.model_dump_json().encode(),
                headers=_headers(envelope),
            )
        )
    return messages


def _headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    # The relay's `ce_` headers, so the consumer decodes what it would in production.
    attributes = envelope.model_dump(mode="json", include={"id", "type", "time", "source"})
    pending = PendingEvent(
        outbox_id=0,
        subject=envelope.subject,
        payload="",
        event_id=attributes["id"],
        type=attributes["type"],
        source=attributes["source"],
        time=attributes["time"],
        sequence=str(envelope.sequence),
    )
    return cloudevent_headers(pending)


async def publish_redis(
    url: str, stream: str, messages: Sequence[Message], *, appending: bool = False
) -> None:
    """XADD every envelope into `stream` as the relay writes it (field `__data__`).

    Unless `appending` to a stream that already holds entries, check that it took them all.
    """
    client = Redis.from_url(url)
    try:
        for start in range(0, len(messages), PUBLISH_BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for message in messages[start : start + PUBLISH_BATCH]:
                    pipe.xadd(stream, {STREAM_FIELD: message.value})
                await pipe.execute()
        if not appending and await client.xlen(stream) != len(messages):
            raise RuntimeError(f"{stream} did not take every entry")
    finally:
        await client.aclose()


async def publish_kafka(
    broker: Tansu, topic: str, partitions: int, messages: Sequence[Message]
) -> None:
    """Create the topic and send every envelope keyed by user, with the relay's headers."""
    await ensure_topic(broker.servers, topic, TopicLayout(partitions, 1))
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.servers,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        enable_idempotence=False,
    )
    await producer.start()
    try:
        for start in range(0, len(messages), PUBLISH_BATCH):
            acks = [
                await producer.send(topic, m.value, key=m.key, headers=m.headers)
                for m in messages[start : start + PUBLISH_BATCH]
            ]
            await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def consume(
    space: Scratch, broker_url: str, stream: str, count: int, args: argparse.Namespace,
    batch_size: int, tansu_broker: Tansu | None,
) -> Run:  # fmt: skip
    """Run the profile consumer from the start of `stream` until it has applied `count` events."""
    settings = ConsumerSettings(
        _env_file=None,
        database_url=space.database_url,
        broker_url=broker_url,
        stream=stream,
        consumer_name="bench",
        consumer_group=f"profiles-bench-{uuid.uuid4().hex[:8]}",
        consumer_batch_size=batch_size,
        kafka_partitions=args.partitions,
        # Tansu completes a group join only after half the session timeout.
        kafka_session_timeout_ms=3000,
    )
    consumer = create_consumer_app(settings, ProfileProjection())
    rss_before = current_rss_mib()
    peak_reset = reset_peak_rss()
    broker_cpu = tansu_broker.cpu_seconds() if tansu_broker else 0.0
    cpu = time.process_time()
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    await consumer.start()
    try:
        while (applied := consumer.totals.applied) < count:
            now = time.perf_counter()
            if first is None and applied > 0:
                first = (now, applied)
            if now - started > TIMEOUT_SECONDS:
                raise RuntimeError(f"applied only {applied} of {count} in time")
            await asyncio.sleep(POLL_SECONDS)
        finished = time.perf_counter()
        cpu = time.process_time() - cpu
        broker_cpu = tansu_broker.cpu_seconds() - broker_cpu if tansu_broker else 0.0
    finally:
        await consumer.stop()
    totals = consumer.totals
    if totals.duplicates or totals.skipped or totals.gaps or totals.rejected:
        raise RuntimeError(f"unexpected outcome: {totals}")
    if first is None:  # everything came within the first poll interval
        first = (started, 0)
    return Run(
        broker="kafka" if tansu_broker else "redis",
        batch_size=batch_size,
        events=count,
        startup=first[0] - started,
        first_applied=first[1],
        applying=max(finished - first[0], 1e-9),
        total=finished - started,
        cpu=cpu,
        broker_cpu=broker_cpu if tansu_broker else None,
        rss_before=rss_before,
        rss_peak=_status_mib("VmHWM") if peak_reset else None,
    )


async def check_profiles(space: Scratch, count: int) -> None:
    """Fail unless the projection holds one profile per event."""
    conn = await asyncpg.connect(space.database_url)
    try:
        rows = await conn.fetchval(_PROFILES)
    finally:
        await conn.close()
    if rows != count:
        raise RuntimeError(f"profiles.profiles holds {rows} rows, {count} expected")


def report(run: Run) -> None:
    """Print one run's figures."""
    label = f"{run.broker}, batch {run.batch_size}:"
    show(f"{label} start-up to first applied", run.startup, "s", 2)
    show(f"{label} applied", run.rate, "events/s", 0)
    show(f"{label}   incl. start-up", run.events / run.total, "events/s", 0)
    show(f"{label}   own CPU / wall", run.cpu / run.total, "cores", 2)
    if run.broker_cpu is not None:
        show(f"{label}   Tansu CPU / wall", run.broker_cpu / run.total, "cores", 2)
    show(f"{label}   RSS at consumer start", run.rss_before, "MiB", 0)
    if run.rss_peak is not None:
        show(f"{label}   peak RSS in the run", run.rss_peak, "MiB", 0)


# getrusage's peak cannot be reset, but /proc/self/clear_refs resets the kernel's high-water
# mark behind it: each run's own peak is then VmHWM, and the process's peak the largest of them.
_peaks: list[float] = []


def peak_rss_mib() -> float:
    """The process's peak resident set size since it started (Linux reports kilobytes)."""
    return max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *_peaks])


def reset_peak_rss() -> bool:
    """Start measuring a new peak RSS; False where the kernel does not allow it."""
    _peaks.append(peak_rss_mib())
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def current_rss_mib() -> float:
    """The process's resident set size now."""
    return _status_mib("VmRSS") or 0.0


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


async def one_run(
    args: argparse.Namespace, kind: str, batch_size: int, messages: Sequence[Message],
    tansu_broker: Tansu,
) -> Run:  # fmt: skip
    """Pre-publish to a fresh stream or topic, then consume it into a fresh database."""
    async with scratch(args) as space:
        stream = space.stream(f"{kind}-{batch_size}")
        if kind == "redis":
            await publish_redis(space.redis_url, stream, messages)
            run = await consume(space, space.redis_url, stream, len(messages), args, batch_size,
                                None)  # fmt: skip
        else:
            await publish_kafka(tansu_broker, stream, args.partitions, messages)
            run = await consume(space, tansu_broker.url, stream, len(messages), args,
                                batch_size, tansu_broker)  # fmt: skip
        await check_profiles(space, len(messages))
    report(run)
    return run


async def main(args: argparse.Namespace) -> dict[tuple[str, int], Run]:
    """Time the profile consumer on each broker and batch size; print rates against targets."""
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    brokers = args.brokers.split(",")
    show_text("events, partitions", f"{args.events:,}, {args.partitions}")
    show_load("at start")
    started = time.perf_counter()
    messages = make_messages(args.events)
    # The envelopes must be what a consumer accepts, or the benchmark proves nothing.
    event_from_envelope(Envelope.model_validate_json(messages[0].value))
    show("envelopes built in", time.perf_counter() - started, "s", 2)
    show("envelope size (first)", len(messages[0].value), "bytes", 0)
    runs: dict[tuple[str, int], Run] = {}
    with tansu() as broker:
        show_text("Kafka broker", f"{broker.version} (in memory) at {broker.url}")
        # Brokers alternate within each batch size, so a change in the machine's load
        # during the run weighs on both.
        for batch_size in batch_sizes:
            for kind in brokers:
                runs[kind, batch_size] = await one_run(args, kind, batch_size, messages, broker)
    show_load("at end")
    for kind in brokers:
        for batch_size in batch_sizes:
            show(f"{kind} applied, batch {batch_size}", runs[kind, batch_size].rate, "events/s", 0)
    default = batch_sizes[0]
    for kind in brokers:
        rate = runs[kind, default].rate
        met = "met" if rate >= TARGETS[kind] else "NOT met"
        show_text(
            f"{kind}, batch {default}: target",
            f">= {TARGETS[kind]:,.0f} events/s: {met} ({rate:,.0f})",
        )
    if {"redis", "kafka"} <= set(brokers):
        for batch_size in batch_sizes:
            show_ratio(
                f"ratio Kafka / Redis, batch {batch_size}",
                runs["kafka", batch_size].rate / runs["redis", batch_size].rate,
            )
    show("peak RSS of this process", peak_rss_mib(), "MiB", 0)
    return runs


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument(
        "--events", type=int, default=50_000, help="events per run (default: 50000)"
    )
    parser.add_argument(
        "--batch-sizes",
        default="500,1000,2000",
        help="consumer_batch_size values to run, comma-separated; the first is the one the "
        "targets are checked against (default: %(default)s)",
    )
    parser.add_argument(
        "--brokers",
        default="redis,kafka",
        help="brokers to run, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--partitions", type=int, default=6, help="partitions of each topic (default: 6)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
