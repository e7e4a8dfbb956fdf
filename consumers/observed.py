"""A consumer's metrics and probes: what it applied, how far behind it is, whether it moves.

Counters are read from the consumer at scrape time, so the batch loop pays nothing for
them; the lag behind the stream (the broker's group lag, as `userbus status` shows it) and
behind the event log are sampled by a task beside the consumer.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumers.consumer import ProjectionConsumer
from infra.brokers import broker_for
from infra.observability.probe_server import serving_probes
from infra.observability.probes import Probes, broker_check, database_check
from infra.settings import asyncpg_dsn


@dataclass
class LagSample:
    """The group's lag as last sampled; None where it is not known."""

    behind_stream: int | None = None
    unacknowledged: int | None = None
    behind_log: int | None = None


class ConsumerCollector(Collector):
    """userbus_consumer_*: one consumer group's counts and lag, read at each scrape."""

    def __init__(self, consumer: ProjectionConsumer, lag: LagSample) -> None:
        self._consumer = consumer
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        """The consumer's counters and its last lag sample."""
        group = [self._consumer.group]
        totals = self._consumer.totals
        settler = self._consumer.settler
        for name, help_text, value in (
            ("applied_events", "events applied to the projection", totals.applied),
            ("duplicate_events", "events already applied (redeliveries), changing nothing",
             totals.duplicates),
            ("skipped_events", "events of types the projection does not handle", totals.skipped),
            ("backfilled_events", "missing events taken from the event log", totals.backfilled),
            ("dead_letters", "messages sent to the dead-letter stream",
             self._consumer.dead_lettered),
            ("retries", "attempts made again (database away, or an event failing)",
             settler.retries),
        ):  # fmt: skip
            counter = CounterMetricFamily(f"userbus_consumer_{name}", help_text, labels=["group"])
            counter.add_metric(group, value)
            yield counter
        for name, help_text, sampled in (
            ("lag_stream", "messages on the stream not yet delivered to the group",
             self._lag.behind_stream),
            ("unacknowledged", "messages delivered to the group, not yet acknowledged",
             self._lag.unacknowledged),
            ("lag_log", "events in the event log beyond what the projection tracks",
             self._lag.behind_log),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(f"userbus_consumer_{name}", help_text, labels=["group"])
            if sampled is not None:
                gauge.add_metric(group, sampled)
            yield gauge


async def sample_lag(consumer: ProjectionConsumer, into: LagSample) -> None:
    """Measure the group's lag behind the stream and, with a log database, behind the log."""
    settings = consumer.settings
    found = await broker_for(settings.broker_url).status(settings.stream, [consumer.group])
    for lag in found.groups:
        if lag.group == consumer.group:
            into.behind_stream, into.unacknowledged = lag.behind, lag.unacknowledged
    if settings.event_log_url is not None:
        # Each user's sequence counts that user's events, so the log's length less the sum
        # of tracked sequences is what the projection has not applied (one scan of each).
        logged = await _fetch_int(settings.event_log_url, "SELECT count(*) FROM auth.outbox")
        table = consumer.settler.applier.tracking
        tracked = await _fetch_int(
            settings.database_url,
            f'SELECT coalesce(sum(sequence), 0) FROM "{table.schema}".{table.name}',
        )
        into.behind_log = max(0, logged - tracked)


async def _fetch_int(url: str, query: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def _keep_sampling(
    consumer: ProjectionConsumer, lag: LagSample, stop: asyncio.Event, interval: float
) -> None:
    while not stop.is_set():
        # A broker or database away shows in /readyz; the metrics keep their last sample.
        with contextlib.suppress(Exception):
            await sample_lag(consumer, lag)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def consumer_registry(consumer: ProjectionConsumer, lag: LagSample) -> CollectorRegistry:
    """A registry of this consumer's metrics alone (one per process, never the global one)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ConsumerCollector(consumer, lag))
    return registry


def consumer_probes(consumer: ProjectionConsumer) -> Probes:
    """Live: its loop turned recently. Ready: also its database and broker answer."""
    settings = consumer.settings
    checks = {
        "database": database_check(settings.database_url),
        "broker": broker_check(settings.broker_url, settings.stream),
    }
    return Probes(consumer.settler.heartbeat, checks)


@contextlib.asynccontextmanager
async def observing(consumer: ProjectionConsumer, stop: asyncio.Event) -> AsyncIterator[None]:
    """While inside: the consumer's /metrics, /livez, /readyz on USERBUS_METRICS_PORT, if set."""
    settings = consumer.settings
    if settings.metrics_port is None:
        yield
        return
    lag = LagSample()
    registry = consumer_registry(consumer, lag)
    interval = settings.metrics_sample_seconds
    async with serving_probes(
        registry, consumer_probes(consumer), settings.metrics_host, settings.metrics_port
    ):
        sampler = asyncio.create_task(_keep_sampling(consumer, lag, stop, interval))
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
