"""Kafka consumer groups: offsets committed only after the apply, crashes, and shared work."""

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer, reader_options
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, Event
from infra.kafka.reader import KafkaGroupReader, Offsets
from infra.kafka.urls import kafka_servers
from tests.conftest import KAFKA_SESSION_TIMEOUT_MS
from tests.integration.helpers import eventually, unacknowledged
from tests.integration.test_consumer import deleted, profiles, registered, xadd

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


@pytest.fixture
def kafka_settings(isolated_database_url: str, kafka_url: str, stream: str) -> ConsumerSettings:
    """Consumer settings on a fresh three-partition topic."""
    return ConsumerSettings(
        database_url=isolated_database_url,
        broker_url=kafka_url,
        stream=stream,
        kafka_partitions=3,
        consumer_batch_size=10,
        consumer_group=f"profiles-{uuid.uuid4().hex[:8]}",
        kafka_session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS,
    )


class DiesBeforeCommitting(KafkaGroupReader):
    """A group member that never commits offsets: one killed after each apply."""

    async def commit(self, offsets: Offsets) -> None:
        return None


async def test_a_batch_applied_but_not_committed_comes_again_and_is_absorbed(
    kafka_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    users = [registered() for _ in range(6)]
    await xadd(kafka_settings.broker_url, kafka_settings.stream, [*users, deleted(users[0])])
    projection = ProfileProjection()
    reader = DiesBeforeCommitting(
        kafka_servers(kafka_settings.broker_url), reader_options(kafka_settings, projection)
    )
    dying = create_consumer_app(kafka_settings, projection, reader=reader)
    await dying.start()
    try:
        await eventually(lambda: _applied(dying, 7), timeout=30)
    finally:
        await dying.stop()
    assert await unacknowledged(
        kafka_settings.broker_url, kafka_settings.stream, str(kafka_settings.consumer_group)
    ) == 7  # fmt: skip

    successor = create_consumer_app(kafka_settings, ProfileProjection())
    await successor.start()
    try:

        async def settled() -> bool:
            lag = await unacknowledged(
                kafka_settings.broker_url, kafka_settings.stream, str(kafka_settings.consumer_group)
            )
            return lag == 0

        await eventually(settled, timeout=30)
    finally:
        await successor.stop()
    assert successor.totals.duplicates == 7  # every redelivered event changed nothing
    assert successor.totals.applied == 0
    assert sorted(row[1] for row in await profiles(engine)) == sorted(
        u.data["username"] for u in users[1:]
    )


async def _applied(consumer: ProjectionConsumer, count: int, *, at_least: bool = False) -> bool:
    applied = consumer.totals.applied
    return applied >= count if at_least else applied == count


async def test_a_consumer_process_killed_mid_backlog_resumes_from_its_commits(
    kafka_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    users = [registered() for _ in range(300)]
    await xadd(kafka_settings.broker_url, kafka_settings.stream, users)
    env = {
        **os.environ,
        "USERBUS_DATABASE_URL": kafka_settings.database_url,
        "USERBUS_BROKER_URL": kafka_settings.broker_url,
        "USERBUS_STREAM": kafka_settings.stream,
        "USERBUS_CONSUMER_BATCH_SIZE": "5",
        "USERBUS_KAFKA_PARTITIONS": "3",
        "USERBUS_CONSUMER_GROUP": str(kafka_settings.consumer_group),
        "USERBUS_KAFKA_SESSION_TIMEOUT_MS": str(KAFKA_SESSION_TIMEOUT_MS),
        "USERBUS_LOG_LEVEL": "WARNING",
    }

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userbus", "consume", "profiles", env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    first = await start()

    async def some_applied() -> bool:
        try:
            return len(await profiles(engine)) >= 20
        except ProgrammingError:  # the process has not created its tables yet
            return False

    await eventually(some_applied, timeout=60)
    first.send_signal(signal.SIGKILL)  # mid-backlog: applied batches may be uncommitted
    await first.wait()
    second = await start()
    try:

        async def all_applied() -> bool:
            lag = await unacknowledged(
                kafka_settings.broker_url, kafka_settings.stream, str(kafka_settings.consumer_group)
            )
            return len(await profiles(engine)) == 300 and lag == 0

        await eventually(all_applied, timeout=90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await second.wait() == 0
    assert {row[1] for row in await profiles(engine)} == {u.data["username"] for u in users}


async def test_two_consumers_of_one_group_share_the_partitions_and_apply_each_event_once(
    kafka_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    one = create_consumer_app(
        kafka_settings.model_copy(update={"consumer_name": "one"}), ProfileProjection()
    )
    two = create_consumer_app(
        kafka_settings.model_copy(update={"consumer_name": "two"}), ProfileProjection()
    )
    await one.start()
    await two.start()
    try:
        await asyncio.sleep(3)  # let the group settle on an assignment of both members
        users = [registered(f"u{uuid.uuid4().hex[:8]}") for _ in range(60)]
        gone = users[:20]
        await xadd(
            kafka_settings.broker_url,
            kafka_settings.stream,
            [*users, *(deleted(user) for user in gone)],
        )

        async def done() -> bool:
            return one.totals.applied + two.totals.applied == 80

        await eventually(done, timeout=60)
        await asyncio.sleep(0.5)  # nothing more comes
    finally:
        await one.stop()
        await two.stop()
    assert one.totals.applied + two.totals.applied == 80  # each event once
    assert one.totals.gaps == two.totals.gaps == 0  # each user's events in order
    assert one.totals.applied > 0
    assert two.totals.applied > 0
    remaining = {user.data["username"] for user in users[20:]}
    assert {row[1] for row in await profiles(engine)} == remaining


class Unhurried(ProfileProjection):
    """The profile projection, taking 50 ms over each batch so that a rebalance meets a backlog."""

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        await asyncio.sleep(0.05)
        await super().apply_many(conn, batch)


async def test_a_member_joining_mid_backlog_takes_partitions_over_without_losing_or_reordering(
    kafka_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    # The first member hands partitions over in the middle of the backlog: it applies and
    # commits what it has read, and the second one continues from those commits.
    users = [registered(f"u{uuid.uuid4().hex[:8]}") for _ in range(300)]
    gone = users[:150]
    await xadd(
        kafka_settings.broker_url, kafka_settings.stream, [*users, *(deleted(u) for u in gone)]
    )
    one = create_consumer_app(
        kafka_settings.model_copy(update={"consumer_name": "one"}), Unhurried()
    )
    two = create_consumer_app(
        kafka_settings.model_copy(update={"consumer_name": "two"}), Unhurried()
    )
    await one.start()
    try:
        await eventually(lambda: _applied(one, 50, at_least=True), timeout=30)
        await two.start()

        async def settled() -> bool:
            lag = await unacknowledged(
                kafka_settings.broker_url, kafka_settings.stream, str(kafka_settings.consumer_group)
            )
            return lag == 0 and one.totals.applied + two.totals.applied == 450

        await eventually(settled, timeout=90)
    finally:
        await one.stop()
        await two.stop()
    assert two.totals.applied > 0  # the second member did get partitions
    assert one.totals.applied + two.totals.applied == 450  # each event once in effect
    assert one.totals.gaps == two.totals.gaps == 0  # each user's events in order
    kept = {user.data["username"] for user in users[150:]}
    assert {row[1] for row in await profiles(engine)} == kept
