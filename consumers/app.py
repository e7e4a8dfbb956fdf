"""create_consumer_app: a projection following the configured broker."""

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.base import ProjectionConsumer
from consumers.projection import Projection
from consumers.settings import ConsumerSettings
from events.brokers import broker_kind


def create_consumer_app(
    settings: ConsumerSettings, projection: Projection, *, engine: AsyncEngine | None = None
) -> ProjectionConsumer:
    """A consumer of the configured stream (Redis) or topic (Kafka) for `projection`."""
    # Imported here: each broker's client library loads only when that broker is used.
    if broker_kind(settings.broker_url) == "kafka":
        from consumers.kafka import KafkaTopicConsumer

        return KafkaTopicConsumer(settings, projection, engine)
    from consumers.redis_stream import RedisStreamConsumer

    return RedisStreamConsumer(settings, projection, engine)
