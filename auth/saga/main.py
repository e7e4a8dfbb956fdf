"""create_registration_saga: the auth service's saga process (answer follower and sweeper)."""

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auth.bootstrap import Overrides, build_context
from auth.saga.answers import ProfileAnswers
from auth.saga.sweeper import PendingRegistrationSweeper
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.observed import observing
from consumers.settings import ConsumerSettings


@dataclass
class RegistrationSaga:
    """The follower of the profile service's answers, and the expiry sweeper beside it."""

    consumer: ProjectionConsumer
    sweeper: PendingRegistrationSweeper
    engine: AsyncEngine
    resources: AsyncExitStack

    async def run(self, stop: asyncio.Event) -> None:
        """Follow answers and sweep until `stop` is set."""
        await self.consumer.start()
        try:
            # If the consumer fails, the task group cancels the sweeper and the error ends
            # the process; `stop` ends both.
            async with observing(self.consumer, stop), asyncio.TaskGroup() as tasks:
                tasks.create_task(self.consumer.serve(stop))
                tasks.create_task(self.sweeper.run(stop))
        finally:
            await self.consumer.stop()
            await self.resources.aclose()
            await self.engine.dispose()


def create_registration_saga(
    auth: AuthSettings, consumer: ConsumerSettings, overrides: Overrides | None = None
) -> RegistrationSaga:
    """The saga on the auth database, following `auth.profile_stream` on the consumer's broker.

    The answers change the auth database's users, so the follower's database is auth's
    whatever `consumer.database_url` says; the rest of `consumer` (broker, group, batch
    sizes) applies as given, but the event log: the answers' log is the profile service's
    outbox, not auth's, so the follower does not heal from a log (consumers/healing.py).
    """
    follower = consumer.model_copy(
        update={
            "stream": auth.profile_stream,
            "database_url": auth.database_url,
            "event_log_url": None,
            "feed_url": None,
        }
    )
    engine = create_async_engine(auth.database_url, pool_size=2)
    context, resources = build_context(auth, engine, overrides)
    sweeper = PendingRegistrationSweeper(
        context,
        timeout=timedelta(seconds=auth.pending_registration_timeout_seconds),
        interval=auth.registration_sweep_interval_seconds,
    )
    projection = ProfileAnswers(context, event_source=auth.event_source)
    return RegistrationSaga(create_consumer_app(follower, projection), sweeper, engine, resources)


async def run_registration_saga(
    auth: AuthSettings, consumer: ConsumerSettings, stop: asyncio.Event
) -> None:
    """Run the saga process until `stop` is set."""
    await create_registration_saga(auth, consumer).run(stop)
