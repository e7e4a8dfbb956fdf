"""The profile service's consumer process."""

from consumers.app import create_consumer_app
from consumers.base import ProjectionConsumer
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection


def create_profile_consumer(settings: ConsumerSettings) -> ProjectionConsumer:
    """The profile projection following the user stream."""
    return create_consumer_app(settings, ProfileProjection())
