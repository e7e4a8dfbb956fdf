"""Relay throughput, outbox to a Kafka topic (Tansu), as a ratio to raw aiokafka produce."""

import argparse
import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
from _common import (
    Scratch,
    make_parser,
    relay_until_published,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)
from _tansu import Tansu, count_records, tansu
from aiokafka import AIOKafkaProducer
from relay import TimedPublisher, fill_outbox

from events import envelope_from_json, event_from_envelope
from infra.kafka.admin import ensure_topic
from infra.kafka.publisher import cloudevent_headers
from infra.publishing import PendingEvent, TopicLayout
from producers.main import create_relay, make_publisher
from producers.relay import EVENT_COLUMNS
from producers.settings import RelaySettings

TARGET_RATIO = 0.5
TIMEOUT_SECONDS = 900.0
MAX_BATCH_BYTES = 1024 * 1024

# The columns the relay reads for each event, so the baseline sends the same keys and values.
_EVENTS = f"SELECT {EVENT_COLUMNS} FROM auth.outbox o ORDER BY o.id"
_PENDING_COUNT = "SELECT count(*) FROM auth.outbox_pending"

Header = tuple[str, bytes]
T = TypeVar("T")


class ConnectTimedPublisher(TimedPublisher):
    """Also times `connect` (topic check and producer start), which the relay does before work."""

    connect_seconds = 0.0

    async def connect(self) -> None:
        """Open the producer, timing it."""
        started = time.perf_counter()
        await super().connect()
        self.connect_seconds = time.perf_counter() - started


@dataclass
class Timed(Generic[T]):
    """A step's result, wall seconds (its own, when it reports them), and CPU seconds used."""

    result: T
    seconds: float
    cpu: float
    broker_cpu: float

    def cpu_per(self, count: int) -> float:
        """This process's CPU microseconds per item."""
        return 1e6 * self.cpu / count

    def broker_cpu_per(self, count: int) -> float:
        """The broker's CPU microseconds per item."""
        return 1e6 * self.broker_cpu / count


async def timed(broker: Tansu, step: Awaitable[T]) -> "Timed[T]":
    """Run `step`, noting this process's and the broker's CPU time meanwhile.

    A step returning seconds (or a tuple starting with them) reports its own wall time,
    which leaves out its setup (starting a producer, say).
    """
    cpu, broker_cpu = time.process_time(), broker.cpu_seconds()
    started = time.perf_counter()
    result = await step
    seconds = time.perf_counter() - started
    own = result[0] if isinstance(result, tuple) else result
    return Timed(
        result=result,
        seconds=own if isinstance(own, float) else seconds,
        cpu=time.process_time() - cpu,
        broker_cpu=broker.cpu_seconds() - broker_cpu,
    )


def raw_producer(servers: list[str]) -> AIOKafkaProducer:
    """The baseline producer: the relay's producer settings, minus idempotence (Tansu lacks it)."""
    return AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        linger_ms=5,
        max_batch_size=MAX_BATCH_BYTES,
        enable_idempotence=False,
    )


async def raw_produce(
    tansu: Tansu,
    topic: str,
    events: Sequence[PendingEvent],
    batch: int,
    headers: Sequence[list[Header]] | None = None,
) -> float:
    """Seconds to send every payload keyed by user, waiting for the acks of each `batch` sends."""
    keys = [event.subject.encode() for event in events]
    values = [event.payload.encode() for event in events]
    producer = raw_producer(tansu.servers)
    await producer.start()
    try:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            acks = [
                await producer.send(
                    topic,
                    values[i],
                    key=keys[i],
                    headers=None if headers is None else headers[i],
                )
                for i in range(start, min(start + batch, len(events)))
            ]
            await asyncio.gather(*acks)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def real_relay(
    space: Scratch, tansu: Tansu, topic: str, args: argparse.Namespace
) -> tuple[float, float, float]:
    """Seconds for `create_relay` to publish every event; of them publishing, and connecting."""
    settings = RelaySettings(
        _env_file=None,
        database_url=space.database_url,
        broker_url=tansu.url,
        stream=topic,
        relay_batch_size=args.batch,
        relay_workers=args.workers,
        kafka_partitions=args.partitions,
        # Tansu has no InitProducerId.
        kafka_idempotent_producer=False,
    )
    publisher = ConnectTimedPublisher(make_publisher(settings))
    relay = create_relay(settings, publisher=publisher)
    elapsed = await relay_until_published(relay, args.events, TIMEOUT_SECONDS)
    return elapsed, publisher.seconds, publisher.connect_seconds


async def check_topic(tansu: Tansu, topic: str, count: int) -> None:
    """Fail unless the topic holds exactly `count` records."""
    held = await count_records(tansu.servers, topic)
    if held != count:
        raise RuntimeError(f"{topic}: {held} records, {count} expected")


def pending_events(rows: Sequence[Any]) -> list[PendingEvent]:
    """The outbox rows as the relay sees them."""
    return [PendingEvent._make(row) for row in rows]


async def main(args: argparse.Namespace) -> float:
    """Fill the outbox, time raw produce and the relay into fresh topics, print the ratio."""
    workers = args.workers or "default"
    show_text(
        "events, batch size, partitions, relay workers",
        f"{args.events:,}, {args.batch}, {args.partitions}, {workers}",
    )
    show_load("at start")
    with tansu() as broker:
        show_text("broker", f"{broker.version} (in memory) at {broker.url}")
        async with scratch(args) as space:
            conn = await asyncpg.connect(space.database_url)
            try:
                started = time.perf_counter()
                await fill_outbox(conn, args.events)
                show("outbox filled in", time.perf_counter() - started, "s", 2)
                events = pending_events(await conn.fetch(_EVENTS))
                # The rows must be events a consumer accepts, or the benchmark proves nothing.
                event_from_envelope(envelope_from_json(events[0].payload))
                show("payload size (first row)", len(events[0].payload), "bytes", 0)

                topics = {purpose: f"userbus.bench.{space.run_id}.{purpose}" for purpose in
                          ("warmup", "raw", "raw-headers", "relay", "raw-after")}  # fmt: skip
                for purpose in ("warmup", "raw", "raw-headers", "raw-after"):
                    await ensure_topic(
                        broker.servers, topics[purpose], TopicLayout(args.partitions, 1)
                    )
                headers = [cloudevent_headers(event) for event in events]

                # Untimed: the first connection, topic metadata and the broker's first
                # segments would otherwise weigh on whichever run came first.
                await raw_produce(broker, topics["warmup"], events[: args.events // 10], args.batch)
                raw = [await timed(broker, raw_produce(broker, topics["raw"], events, args.batch))]
                with_headers = await timed(
                    broker, raw_produce(broker, topics["raw-headers"], events, args.batch, headers)
                )
                relay = await timed(
                    broker,
                    real_relay(space, broker, topics["relay"], args),
                )
                # Raw produce again after the relay: the baseline is the mean of the two, so
                # a drift in the machine's load during the run weighs on both sides.
                raw.append(
                    await timed(
                        broker, raw_produce(broker, topics["raw-after"], events, args.batch)
                    )
                )
                del events, headers
                pending = await conn.fetchval(_PENDING_COUNT)
                if pending != 0:
                    raise RuntimeError(f"{pending} events still queued after the relay")
                for purpose in ("raw", "raw-headers", "relay", "raw-after"):
                    await check_topic(broker, topics[purpose], args.events)
                show_text("records in each topic", f"{args.events:,} (counted to high watermarks)")
            finally:
                await conn.close()
    show_load("at end")
    n = args.events
    relay_seconds, publish_seconds, connect_seconds = relay.result
    raw_rates = [n / run.seconds for run in raw]
    raw_rate = n / (sum(run.seconds for run in raw) / len(raw))
    relay_rate = n / relay.seconds
    show_text("raw aiokafka produce", " / ".join(f"{rate:,.0f}" for rate in raw_rates)
              + " msgs/s (before / after the relay)")  # fmt: skip
    show("  mean", raw_rate, "msgs/s", 0)
    show("  this process's CPU per message", raw[0].cpu_per(n), "us", 1)
    show("  broker (Tansu) CPU per message", raw[0].broker_cpu_per(n), "us", 1)
    show("raw aiokafka produce with ce_ headers", n / with_headers.seconds, "msgs/s", 0)
    show("  this process's CPU per message", with_headers.cpu_per(n), "us", 1)
    show("relay (create_relay)", relay_rate, "events/s", 0)
    show("  of which connecting (topic, producer)", connect_seconds, "s", 2)
    show("  of which in publish (aiokafka)", publish_seconds, "s", 2)
    show(
        "  of which elsewhere (PostgreSQL, loop)",
        relay_seconds - publish_seconds - connect_seconds,
        "s",
        2,
    )
    show("  this process's CPU per event", relay.cpu_per(n), "us", 1)
    show("  this process's CPU / wall", relay.cpu / relay.seconds, "cores", 2)
    show("  broker (Tansu) CPU per event", relay.broker_cpu_per(n), "us", 1)
    show_ratio("ratio raw with headers / raw", n / with_headers.seconds / raw_rate)
    ratio: float = relay_rate / raw_rate
    show_ratio("ratio relay / raw produce", ratio, f">= {TARGET_RATIO}", ratio >= TARGET_RATIO)
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument(
        "--events", type=int, default=100_000, help="pending events (default: 100000)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1000,
        help="rows per transaction and sends per gather (default: 1000)",
    )
    parser.add_argument(
        "--partitions", type=int, default=6, help="partitions of each topic (default: 6)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="relay_workers (default: the relay's, 2)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
