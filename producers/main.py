"""create_relay and run_relay: the relay process, wired from one settings object."""

import asyncio

from infra.brokers import broker_for
from infra.publishing import EventPublisher, TopicLayout
from producers.relay import OutboxRelay
from producers.settings import RelaySettings


def make_publisher(settings: RelaySettings) -> EventPublisher:
    """The publisher for the configured broker URL and stream (or topic)."""
    return broker_for(settings.broker_url).publisher(
        settings.stream,
        TopicLayout(settings.kafka_partitions, settings.kafka_replication_factor),
        idempotent=settings.kafka_idempotent_producer,
    )


def create_relay(
    settings: RelaySettings, *, publisher: EventPublisher | None = None
) -> OutboxRelay:
    """A relay for the configured database and broker (tests may pass their own publisher)."""
    return OutboxRelay(
        settings.database_url,
        publisher or make_publisher(settings),
        batch_size=settings.relay_batch_size,
        workers=settings.workers,
        fallback_poll_seconds=settings.relay_fallback_poll_seconds,
        schema=settings.outbox_schema,
    )


async def run_relay(settings: RelaySettings, stop: asyncio.Event) -> None:
    """Run a relay until `stop` is set."""
    await create_relay(settings).run(stop)
