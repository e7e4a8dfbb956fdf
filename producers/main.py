"""create_relay and run_relay: the relay process, wired from one settings object."""

import asyncio

from infra.brokers import broker_for
from infra.observability.probe_server import serving_probes
from infra.publishing import EventPublisher
from infra.witness import StreamWitness
from producers.loss import LossCheck
from producers.observed import BacklogSample, keep_sampling, relay_probes, relay_registry
from producers.outbox import notify_channel
from producers.relay import OutboxRelay
from producers.settings import RelaySettings


def make_publisher(settings: RelaySettings) -> EventPublisher:
    """The publisher for the configured broker URL and stream (or topic), with retention."""
    return broker_for(settings.broker_url, settings.kafka_security).publisher(
        settings.stream,
        settings.topic_layout,
        idempotent=settings.kafka_idempotent_producer,
        retention=settings.retention,
    )


def create_relay(
    settings: RelaySettings, *, publisher: EventPublisher | None = None
) -> OutboxRelay:
    """A relay for the configured database and broker (tests may pass their own publisher).

    It checks for lost data (producers/loss.py) unless the check is off, or the publisher
    given is no witness of its stream.
    """
    publisher = publisher or make_publisher(settings)
    loss_check = None
    if settings.relay_loss_check_seconds > 0 and isinstance(publisher, StreamWitness):
        loss_check = LossCheck(
            settings.database_url,
            publisher,
            stream=settings.stream,
            schema=settings.outbox_schema,
            channel=notify_channel(settings.outbox_schema),
            interval=settings.relay_loss_check_seconds,
        )
    return OutboxRelay(
        settings.database_url,
        publisher,
        batch_size=settings.relay_batch_size,
        workers=settings.workers,
        fallback_poll_seconds=settings.relay_fallback_poll_seconds,
        schema=settings.outbox_schema,
        loss_check=loss_check,
    )


async def run_relay(settings: RelaySettings, stop: asyncio.Event) -> None:
    """Run a relay until `stop` is set, with its probes on USERBUS_METRICS_PORT if set."""
    relay = create_relay(settings)
    if settings.metrics_port is None:
        await relay.run(stop)
        return
    sample = BacklogSample()
    registry = relay_registry(relay, sample, settings.outbox_schema)
    probes = relay_probes(relay, settings.database_url, settings.broker_url, settings.stream)
    async with (
        serving_probes(registry, probes, settings.metrics_host, settings.metrics_port),
        asyncio.TaskGroup() as tasks,
    ):
        tasks.create_task(
            keep_sampling(
                settings.database_url,
                settings.outbox_schema,
                sample,
                stop,
                settings.metrics_sample_seconds,
            )
        )
        await relay.run(stop)
