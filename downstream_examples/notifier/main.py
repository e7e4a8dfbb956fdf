"""The notifier process: its consumer queues mails, its sender delivers them."""

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.observed import observing
from consumers.settings import ConsumerSettings
from downstream_examples.notifier.projection import NotifierProjection
from downstream_examples.notifier.sender import NotificationSender
from downstream_examples.notifier.settings import NotifierSettings
from infra.mail import Mailer, mailer_from


class Notifier:
    """The notification projection's consumer and the sender, on one database."""

    def __init__(self, consumer: ProjectionConsumer, sender: NotificationSender) -> None:
        self.consumer = consumer
        self.sender = sender

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and send until `stop` is set; a mail in hand is finished first."""
        # The consumer creates the tables the sender reads, so it starts first.
        await self.consumer.start()
        try:
            # If the consumer fails, the task group cancels the sender and the error ends
            # the process; `stop` ends both.
            async with observing(self.consumer, stop), asyncio.TaskGroup() as tasks:
                tasks.create_task(self.consumer.serve(stop))
                tasks.create_task(self.sender.run(stop))
        finally:
            await self.consumer.stop()


def create_mailer(settings: NotifierSettings) -> Mailer:
    """SMTP when a host is configured, else the notifier's file mailbox."""
    return mailer_from(settings, settings.mailbox_path)


def create_notifier(
    settings: ConsumerSettings,
    mailer: Mailer,
    options: NotifierSettings,
    *,
    engine: AsyncEngine | None = None,
) -> Notifier:
    """The notifier on `settings`' stream and database, sending through `mailer`."""
    engine = engine or create_async_engine(settings.database_url)
    max_age = options.notifier_max_event_age_hours
    projection = NotifierProjection(
        max_event_age=None if max_age is None else timedelta(hours=max_age)
    )
    sender = NotificationSender(
        engine,
        mailer,
        workers=options.notifier_workers,
        max_attempts=options.notifier_max_attempts,
        retry_base_seconds=options.notifier_retry_base_seconds,
        retry_max_seconds=options.notifier_retry_max_seconds,
        poll_seconds=options.notifier_poll_seconds,
    )
    # One engine: the consumer disposes of it when it stops, after the sender has.
    return Notifier(create_consumer_app(settings, projection, engine=engine), sender)


async def run_notifier(
    settings: ConsumerSettings, options: NotifierSettings, stop: asyncio.Event
) -> None:
    """Run the notifier, with the mailer `options` describe, until `stop` is set."""
    await create_notifier(settings, create_mailer(options), options).run(stop)
