"""The relay's check for lost data: where a stream or topic lost events, publish the log again.

The outbox keeps every committed event, so a broker that lost what the relay published (a
Valkey restarted without persistence, a stream deleted, a Kafka topic deleted and made again)
is repaired by queueing the whole outbox again. The relay then publishes it through its
normal path, in per-user order, and consumers absorb what they had already seen by its
sequence.

How a loss is seen: the publisher is the stream's witness (infra/witness.py). It marks the
stream, and `<schema>.relay_state` records, per stream, the counters the broker showed at
the last check. A check finds a loss when the mark is gone or a counter went back, and it
runs when the relay starts, every `interval` seconds, and at once when publishing itself
fails with StreamLostError. The repair commits the queued log first and marks the stream
after, so that nothing is published into the emptied stream ahead of the log (Redis refuses
to publish into an unmarked stream). `generation` counts repairs: a relay whose publisher
saw the loss after another relay repaired it only follows, it does not queue the log twice.
"""

import asyncio
import json
import logging

import asyncpg

from infra.witness import Observation, StreamWitness
from infra.workers import wait
from producers.outbox import check_schema

logger = logging.getLogger(__name__)


def relay_state_ddl(schema: str) -> list[str]:
    """Idempotent statements creating `<schema>.relay_state` (auth's: migration 0005)."""
    return [
        f"""
        CREATE TABLE IF NOT EXISTS {check_schema(schema)}.relay_state (
            stream text PRIMARY KEY,
            -- repairs so far: a relay that saw a loss follows a repair made meanwhile
            generation integer NOT NULL DEFAULT 0,
            -- the broker's counters at the last check (infra/witness.py); NULL: not marked
            counters jsonb,
            checked_at timestamptz NOT NULL DEFAULT now(),
            healed_at timestamptz,
            republished bigint NOT NULL DEFAULT 0
        )
        """
    ]


def loss_reason(recorded: dict[str, int], observed: Observation) -> str | None:
    """Why the broker lost data since `recorded` was observed; None if it shows no loss."""
    if not observed.marked:
        return "the relay's mark is gone (stream or topic deleted, or broker data lost)"
    back = [
        f"{name} {value} -> {observed.counters.get(name, 0)}"
        for name, value in sorted(recorded.items())
        if observed.counters.get(name, 0) < value
    ]
    return "counters went back: " + ", ".join(back) if back else None


class LossCheck:
    """Checks one stream for lost data and queues the outbox again where it finds some."""

    def __init__(
        self,
        dsn: str,
        witness: StreamWitness,
        *,
        stream: str,
        schema: str,
        channel: str,
        interval: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._witness = witness
        self._stream = stream
        self._schema = check_schema(schema)
        self._channel = channel
        self._interval = interval
        self._lock = asyncio.Lock()
        self._stamped = False
        self._table_ready = False
        self.generation: int | None = None
        self.republished = 0

    async def check(self) -> int:
        """Check now; how many events were queued again (0: nothing was lost).

        If another relay has repaired the stream since this one last looked, this one
        follows the repair: its publisher marks the stream afresh (on Kafka, that also
        restarts its producer, which knew the old topic), and nothing is queued again.
        """
        async with self._lock:
            return await self._check(lost=False)

    async def after_loss(self, seen_generation: int | None, why: str) -> int:
        """Publishing failed with StreamLostError under `seen_generation`: repair, or follow."""
        async with self._lock:
            if self.generation != seen_generation:
                return 0  # repaired meanwhile by this process
            logger.warning("relay: publishing to %s failed: %s", self._stream, why)
            return await self._check(lost=True)

    async def watch(self, stop: asyncio.Event) -> None:
        """Check every `interval` seconds until `stop`; a failed check is tried next time."""
        while not stop.is_set():
            await wait(stop, self._interval)
            if stop.is_set():
                return
            try:
                await self.check()
            except Exception as exc:  # the database or broker away: the next round retries
                logger.warning("relay: checking %s for lost data failed (%r)", self._stream, exc)

    async def _check(self, *, lost: bool) -> int:
        conn = await asyncpg.connect(self._dsn)
        try:
            if not self._table_ready:
                await self._create_table(conn)
            return await self._check_with(conn, lost=lost)
        finally:
            await conn.close()

    async def _create_table(self, conn: asyncpg.Connection) -> None:
        # Another service's outbox (producers/outbox.py) has no migration: the relay makes
        # the table. Looked up first, so a relay without CREATE rights on auth runs too.
        table = f"{self._schema}.relay_state"
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            async with conn.transaction():
                # Relays starting together take turns (concurrent CREATEs can collide).
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", table)
                for statement in relay_state_ddl(self._schema):
                    await conn.execute(statement)
        self._table_ready = True

    async def _check_with(self, conn: asyncpg.Connection, *, lost: bool) -> int:
        s = self._schema
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO {s}.relay_state (stream) VALUES ($1) ON CONFLICT DO NOTHING",
                self._stream,
            )
            row = await conn.fetchrow(
                f"SELECT generation, counters::text FROM {s}.relay_state WHERE stream = $1 "
                "FOR UPDATE",
                self._stream,
            )
            generation: int = row[0]
            recorded: dict[str, int] | None = None if row[1] is None else json.loads(row[1])
            following = self.generation is not None and generation > self.generation
            if recorded is None or following:
                # First start, a repair that stopped before marking, or another relay's
                # repair since this one last looked: mark (again) and go on.
                why = None
            else:
                why = loss_reason(recorded, await self._witness.observe())
                if why is None and lost:
                    why = "the publisher saw it lose data"
            if why is None:
                if recorded is None or following or not self._stamped:
                    await self._witness.stamp()
                    self._stamped = True
                await self._record(conn, generation, await self._witness.observe())
                self.generation = generation
                return 0
            await self._witness.recreate()
            queued = await self._queue_log_again(conn, generation)
        self.republished += queued
        logger.warning(
            "relay: %s lost data (%s); queued all %d events of %s.outbox to publish again",
            self._stream, why, queued, s,
        )  # fmt: skip
        # Marked only now that the log is queued: nothing goes into the stream before it.
        # Should this fail, the next check finds the stream unmarked and marks it.
        await self._witness.stamp()
        self._stamped = True
        # Followed by this process's workers only now: a batch failing before the mark was
        # refused by the unmarked stream, and must not count as a loss after the repair.
        self.generation = generation + 1
        await self._record(conn, generation + 1, await self._witness.observe())
        return queued

    async def _queue_log_again(self, conn: asyncpg.Connection, generation: int) -> int:
        s = self._schema
        status = await conn.execute(
            f"INSERT INTO {s}.outbox_pending (id, subject) SELECT id, subject FROM {s}.outbox "
            "ON CONFLICT (id) DO NOTHING"
        )
        queued = int(status.rsplit(" ", 1)[1])
        await conn.execute(
            f"UPDATE {s}.relay_state SET generation = $2, counters = NULL, healed_at = now(), "
            "republished = $3, checked_at = now() WHERE stream = $1",
            self._stream,
            generation + 1,
            queued,
        )
        # Other relays on this outbox wake as for new events.
        await conn.execute("SELECT pg_notify($1, '')", self._channel)
        return queued

    async def _record(
        self, conn: asyncpg.Connection, generation: int, observed: Observation
    ) -> None:
        await conn.execute(
            f"UPDATE {self._schema}.relay_state SET counters = $3::jsonb, checked_at = now() "
            "WHERE stream = $1 AND generation = $2",
            self._stream,
            generation,
            json.dumps(observed.to_record()),
        )
