"""create_consumer_app: a projection following the configured broker."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.consumer import ProjectionConsumer, reader_options
from consumers.healing import event_log_for
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from infra.brokers import broker_for
from infra.reading import GroupReader


def create_consumer_app(
    settings: ConsumerSettings,
    projection: Projection,
    *,
    engine: AsyncEngine | None = None,
    reader: GroupReader[Any] | None = None,
) -> ProjectionConsumer:
    """A consumer of the configured stream (Redis) or topic (Kafka) for `projection`.

    The broker's group reader and dead-letter queue come from the registry; tests may pass
    their own reader. It heals from the event log when the settings name one
    (consumers/healing.py: USERBUS_EVENT_LOG_URL, or USERBUS_FEED_URL).
    """
    broker = broker_for(settings.broker_url, settings.kafka_security)
    options = reader_options(settings, projection)
    return ProjectionConsumer(
        settings,
        projection,
        reader or broker.group_reader(options),
        broker.dead_letters(settings.stream, options.layout),
        engine=engine,
        log=event_log_for(settings),
    )
