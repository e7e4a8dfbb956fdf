"""The relay's metrics and probes: what it published, what waits, and whether it moves.

Counters are read from the relay at scrape time (nothing is added to its hot path); the
outbox backlog and the age of its oldest unpublished event are sampled by a task beside it.
"""

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from infra.observability.probes import Probes, broker_check, database_check
from infra.settings import asyncpg_dsn
from producers.outbox import check_schema
from producers.relay import OutboxRelay

# The queue's size and its first (oldest) event's commit-side time, in one round trip.
_BACKLOG = """
    SELECT (SELECT count(*) FROM {schema}.outbox_pending) AS backlog,
           (SELECT o.occurred_at FROM {schema}.outbox_pending p
            JOIN {schema}.outbox o ON o.id = p.id ORDER BY p.id LIMIT 1) AS oldest
"""


@dataclass
class BacklogSample:
    """The outbox queue as last seen: its length and its oldest event's age (0 when empty)."""

    backlog: int = 0
    oldest_age_seconds: float = 0.0
    sampled_at: float = 0.0


class RelayCollector(Collector):
    """The relay's metrics, read at each scrape."""

    def __init__(self, relay: OutboxRelay, sample: BacklogSample, schema: str) -> None:
        self._relay = relay
        self._sample = sample
        self._schema = schema

    def collect(self) -> Iterator[Metric]:
        """userbus_relay_*: published, publish failures, outbox backlog and its oldest age."""
        labels = ["outbox"]
        published = CounterMetricFamily(
            "userbus_relay_published_events", "events the broker accepted", labels=labels
        )
        published.add_metric([self._schema], self._relay.published)
        errors = CounterMetricFamily(
            "userbus_relay_publish_errors",
            "failed relay attempts, by what failed (retried; nothing is lost)",
            labels=[*labels, "cause"],
        )
        for cause, count in self._relay.failures.items():
            errors.add_metric([self._schema, cause], count)
        backlog = GaugeMetricFamily(
            "userbus_relay_outbox_backlog", "committed events not yet published", labels=labels
        )
        backlog.add_metric([self._schema], self._sample.backlog)
        age = GaugeMetricFamily(
            "userbus_relay_oldest_unpublished_age_seconds",
            "age of the oldest event waiting in the outbox (0 when none waits)",
            labels=labels,
        )
        age.add_metric([self._schema], self._sample.oldest_age_seconds)
        yield from (published, errors, backlog, age)


async def sample_backlog(dsn: str, schema: str, into: BacklogSample) -> None:
    """Measure the outbox queue once, into `into`."""
    conn = await asyncpg.connect(asyncpg_dsn(dsn), timeout=5)
    try:
        row = await conn.fetchrow(_BACKLOG.format(schema=check_schema(schema)))
    finally:
        await conn.close()
    into.backlog = int(row["backlog"])
    oldest = row["oldest"]
    now = time.time()
    into.oldest_age_seconds = max(0.0, now - oldest.timestamp()) if oldest is not None else 0.0
    into.sampled_at = now


async def keep_sampling(
    dsn: str, schema: str, into: BacklogSample, stop: asyncio.Event, interval: float
) -> None:
    """Sample the backlog every `interval` seconds until `stop` (a failed sample is skipped)."""
    while not stop.is_set():
        # The database being away shows in /readyz and in the relay's own errors.
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await sample_backlog(dsn, schema, into)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def relay_registry(relay: OutboxRelay, sample: BacklogSample, schema: str) -> CollectorRegistry:
    """A registry of this relay's metrics alone (one per process, never the global one)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RelayCollector(relay, sample, schema))
    return registry


def relay_probes(relay: OutboxRelay, database_url: str, broker_url: str, stream: str) -> Probes:
    """Live: the relay's loop beat recently. Ready: also its database and broker answer."""
    return Probes(
        relay.heartbeat,
        {"database": database_check(database_url), "broker": broker_check(broker_url, stream)},
    )
