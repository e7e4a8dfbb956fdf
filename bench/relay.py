"""Relay throughput, outbox to Redis Stream, as a ratio to raw pipelined XADD in the same run."""

import argparse
import asyncio
import time
from collections.abc import Sequence

import asyncpg
import redis.utils
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
from redis.asyncio import Redis

from events import envelope_from_json, event_from_envelope
from infra.publishing import EventPublisher, PendingEvent
from infra.redis.wire import STREAM_FIELD
from producers.main import create_relay, make_publisher
from producers.settings import RelaySettings

TARGET_RATIO = 0.5
TIMEOUT_SECONDS = 900.0

# UserRegistered envelopes shaped like the ones the auth service writes (about 450 bytes),
# one per new user: distinct subjects, sequence 1, unique event ids.
_INSERT_PENDING = """
    WITH rows AS (
        SELECT i, gen_random_uuid() AS event_id, gen_random_uuid() AS subject,
               to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS at
        FROM generate_series(1, $1) AS i
    )
    INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at)
    SELECT event_id, subject, 1, 'UserRegistered',
           jsonb_build_object(
               'specversion', '1.0', 'id', event_id, 'source', '/userbus/auth',
               'type', 'UserRegistered', 'subject', subject, 'time', at,
               'datacontenttype', 'application/json', 'sequence', 1,
               'data', jsonb_build_object(
                   'user_id', subject, 'username', 'bench_user_' || i,
                   'email', 'bench_user_' || i || '@example.com', 'role', 'user',
                   'registered_at', at)),
           at::timestamptz
    FROM rows ORDER BY i
"""
_PAYLOADS = "SELECT payload::text FROM auth.outbox ORDER BY id"
_PENDING_COUNT = "SELECT count(*) FROM auth.outbox_pending"
_BARE_LOCK = """
    WITH batch AS (
        SELECT id FROM auth.outbox_pending ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    SELECT b.id, o.payload::text AS payload FROM batch b JOIN auth.outbox o ON o.id = b.id
    ORDER BY b.id
"""
_BARE_MARK = "DELETE FROM auth.outbox_pending WHERE id = ANY($1::bigint[])"


class TimedPublisher:
    """Wraps the real publisher to add up the seconds spent in `publish` (the broker side)."""

    def __init__(self, inner: EventPublisher) -> None:
        self._inner = inner
        self.seconds = 0.0

    async def connect(self) -> None:
        """Open the broker connection."""
        await self._inner.connect()

    async def publish(self, events: Sequence[PendingEvent]) -> None:
        """Publish through the wrapped publisher, timing it."""
        started = time.perf_counter()
        await self._inner.publish(events)
        self.seconds += time.perf_counter() - started

    async def close(self) -> None:
        """Close the broker connection."""
        await self._inner.close()


async def fill_outbox(conn: asyncpg.Connection, count: int) -> None:
    """Insert `count` pending events and refresh the planner's statistics."""
    await conn.execute(_INSERT_PENDING, count)
    await conn.execute("VACUUM ANALYZE auth.outbox, auth.outbox_pending")


async def reset_outbox(conn: asyncpg.Connection) -> None:
    """Queue every event again, and vacuum so the next run starts from tidy tables."""
    await conn.execute(
        "INSERT INTO auth.outbox_pending (id, subject) SELECT id, subject FROM auth.outbox"
    )
    await conn.execute("VACUUM ANALYZE auth.outbox, auth.outbox_pending")


async def raw_xadd(redis: Redis, stream: str, payloads: Sequence[bytes], batch: int) -> float:
    """Seconds to XADD every payload, `batch` per pipeline round trip, no MULTI."""
    started = time.perf_counter()
    for start in range(0, len(payloads), batch):
        async with redis.pipeline(transaction=False) as pipe:
            for payload in payloads[start : start + batch]:
                pipe.xadd(stream, {STREAM_FIELD: payload})
            await pipe.execute()
    return time.perf_counter() - started


async def bare_loop(conn: asyncpg.Connection, redis: Redis, stream: str, batch: int) -> float:
    """Seconds for the simplest correct relay: lock a batch, XADD it, mark it, commit."""
    started = time.perf_counter()
    while True:
        async with conn.transaction():
            rows = await conn.fetch(_BARE_LOCK, batch)
            if not rows:
                break
            async with redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.xadd(stream, {STREAM_FIELD: row["payload"].encode()})
                await pipe.execute()
            await conn.execute(_BARE_MARK, [row["id"] for row in rows])
    return time.perf_counter() - started


async def real_relay(space: Scratch, stream: str, count: int, batch: int) -> tuple[float, float]:
    """Seconds for the production relay to publish `count` pending events; seconds publishing."""
    settings = RelaySettings(
        _env_file=None,
        database_url=space.database_url,
        broker_url=space.redis_url,
        stream=stream,
        relay_batch_size=batch,
    )
    publisher = TimedPublisher(make_publisher(settings))
    relay = create_relay(settings, publisher=publisher)
    elapsed = await relay_until_published(relay, count, TIMEOUT_SECONDS)
    return elapsed, publisher.seconds


async def check_published(conn: asyncpg.Connection, redis: Redis, stream: str, count: int) -> None:
    """Fail unless no event is left queued and the stream holds all of them."""
    pending = await conn.fetchval(_PENDING_COUNT)
    length = await redis.xlen(stream)
    if pending != 0 or length != count:
        raise RuntimeError(f"{stream}: {pending} rows still pending, {length} of {count} entries")


async def main(args: argparse.Namespace) -> float:
    """Fill the outbox, time the three ways of moving it to a stream, print the ratios."""
    try:
        import hiredis
    except ImportError:
        hiredis_version = "not installed"
    else:
        hiredis_version = hiredis.__version__
    show_text("hiredis", f"{hiredis_version}, in use by redis-py: {redis.utils.HIREDIS_AVAILABLE}")
    show_text("events, batch size", f"{args.events:,}, {args.batch}")
    show_load("at start")
    async with scratch(args) as space:
        conn = await asyncpg.connect(space.database_url)
        client = Redis.from_url(space.redis_url)
        try:
            started = time.perf_counter()
            await fill_outbox(conn, args.events)
            show("outbox filled in", time.perf_counter() - started, "s", 2)
            payloads = [row[0].encode() for row in await conn.fetch(_PAYLOADS)]
            # The rows must be events a consumer accepts, or the benchmark proves nothing.
            event_from_envelope(envelope_from_json(payloads[0]))
            show("payload size (first row)", len(payloads[0]), "bytes", 0)

            xadd_stream = space.stream("xadd")
            xadd_seconds = await raw_xadd(client, xadd_stream, payloads, args.batch)
            if await client.xlen(xadd_stream) != args.events:
                raise RuntimeError("raw XADD lost entries")
            await client.delete(xadd_stream)  # frees its memory before the other runs
            del payloads

            relay_stream = space.stream("relay")
            relay_seconds, publish_seconds = await real_relay(
                space, relay_stream, args.events, args.batch
            )
            await check_published(conn, client, relay_stream, args.events)
            await client.delete(relay_stream)

            await reset_outbox(conn)
            bare_stream = space.stream("bare")
            bare_seconds = await bare_loop(conn, client, bare_stream, args.batch)
            await check_published(conn, client, bare_stream, args.events)
        finally:
            await client.aclose()
            await conn.close()
    show_load("at end")
    xadd_rate = args.events / xadd_seconds
    relay_rate = args.events / relay_seconds
    bare_rate = args.events / bare_seconds
    show("raw pipelined XADD (redis-py)", xadd_rate, "XADD/s", 0)
    show("bare relay loop (asyncpg + redis-py)", bare_rate, "events/s", 0)
    show("relay (create_relay)", relay_rate, "events/s", 0)
    show("  of which in publish (XADD script)", publish_seconds, "s", 2)
    show("  of which elsewhere (PostgreSQL, loop)", relay_seconds - publish_seconds, "s", 2)
    show_ratio("ratio relay / bare loop", relay_rate / bare_rate)
    ratio: float = relay_rate / xadd_rate
    show_ratio("ratio relay / raw XADD", ratio, f">= {TARGET_RATIO}", ratio >= TARGET_RATIO)
    return ratio


def parse_args() -> argparse.Namespace:
    """This benchmark's options."""
    parser = make_parser(__doc__ or "")
    parser.add_argument(
        "--events", type=int, default=100_000, help="pending events (default: 100000)"
    )
    parser.add_argument(
        "--batch", type=int, default=1000, help="rows or XADDs per round trip (default: 1000)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    setup_process()
    asyncio.run(main(parse_args()))
