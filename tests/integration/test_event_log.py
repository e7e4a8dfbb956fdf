"""The event log read by position: pages, one user's events, and no skipped late commit."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from events import UserRegistered, UserUpdated, to_envelope
from infra.event_log import PostgresEventLog
from infra.settings import asyncpg_dsn
from producers.outbox import outbox_row

INSERT = (
    "INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id"
)


def _registration(user_id: uuid.UUID) -> tuple[object, ...]:
    now = datetime.now(UTC)
    event = UserRegistered(
        user_id=user_id,
        username=f"u{user_id.hex[:10]}",
        email=f"{user_id.hex[:10]}@example.com",
        role="user",
        registered_at=now,
    )
    return _args(outbox_row(to_envelope(event, sequence=1, source="/test", time=now)))


def _update(user_id: uuid.UUID, sequence: int) -> tuple[object, ...]:
    now = datetime.now(UTC)
    event = UserUpdated(user_id=user_id, display_name=f"name {sequence}", updated_at=now)
    return _args(outbox_row(to_envelope(event, sequence=sequence, source="/test", time=now)))


def _args(row: dict[str, object]) -> tuple[object, ...]:
    return (
        row["event_id"],
        row["subject"],
        row["sequence"],
        row["type"],
        json.dumps(row["payload"]),
        row["occurred_at"],
    )


@pytest.fixture
async def writer(isolated_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    yield conn
    await conn.close()


async def test_pages_walk_the_log_in_order(
    isolated_database_url: str, writer: asyncpg.Connection
) -> None:
    users = [uuid.uuid4() for _ in range(25)]
    for user in users:
        await writer.fetchval(INSERT, *_registration(user))
    async with PostgresEventLog(isolated_database_url) as log:
        seen, after, pages = [], 0, 0
        while True:
            page = await log.page(after, 10)
            seen.extend(page.envelopes())
            pages += 1
            after = page.next
            if page.caught_up:
                break
        assert [e.user_id for e in seen] == users
        assert pages == 3
        assert after == await log.head()
        assert (await log.page(after, 10)).rows == []


async def test_a_late_commit_with_a_smaller_id_is_never_skipped(
    isolated_database_url: str, writer: asyncpg.Connection
) -> None:
    early, late = uuid.uuid4(), uuid.uuid4()
    other = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    async with PostgresEventLog(isolated_database_url) as log:
        try:
            slow = writer.transaction()
            await slow.start()
            small_id = await writer.fetchval(INSERT, *_registration(early))
            big_id = await other.fetchval(INSERT, *_registration(late))  # commits at once
            assert small_id < big_id

            # The open transaction holds the head back: the read waits for it to end.
            reading = asyncio.create_task(log.page(0, 100))
            await asyncio.sleep(0.1)
            assert not reading.done()
            await slow.commit()
            page = await reading
            assert [e.user_id for e in page.envelopes()] == [early, late]
        finally:
            await other.close()


async def test_a_rolled_back_insert_lets_the_head_move_on(
    isolated_database_url: str, writer: asyncpg.Connection
) -> None:
    async with PostgresEventLog(isolated_database_url) as log:
        tx = writer.transaction()
        await tx.start()
        rolled = await writer.fetchval(INSERT, *_registration(uuid.uuid4()))
        reading = asyncio.create_task(log.page(0, 100))
        await asyncio.sleep(0.05)
        await tx.rollback()
        page = await reading
        assert page.rows == []
        assert page.next == rolled
        assert page.caught_up


async def test_a_long_transaction_gets_the_last_proved_head(
    isolated_database_url: str, writer: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("infra.event_log.HORIZON_WAIT_SECONDS", 0.1)
    first = await writer.fetchval(INSERT, *_registration(uuid.uuid4()))
    async with PostgresEventLog(isolated_database_url) as log:
        assert await log.head() == first
        tx = writer.transaction()
        await tx.start()
        await writer.fetchval(INSERT, *_registration(uuid.uuid4()))
        # Not proved while the transaction is open: the head stays where it was.
        assert await log.head() == first
        await tx.commit()
        assert await log.head() == first + 1


async def test_events_of_one_user_after_a_sequence(
    isolated_database_url: str, writer: asyncpg.Connection
) -> None:
    user, stranger = uuid.uuid4(), uuid.uuid4()
    await writer.fetchval(INSERT, *_registration(user))
    await writer.fetchval(INSERT, *_registration(stranger))
    for sequence in (2, 3):
        await writer.fetchval(INSERT, *_update(user, sequence))
    async with PostgresEventLog(isolated_database_url) as log:
        assert [e.sequence for e in await log.events_of(user)] == [1, 2, 3]
        assert [e.sequence for e in await log.events_of(user, 1)] == [2, 3]
        assert await log.events_of(uuid.uuid4()) == []


def test_the_schema_goes_into_sql_only_as_an_identifier() -> None:
    with pytest.raises(ValueError, match="identifier"):
        PostgresEventLog("postgresql://x/y", schema="auth; DROP TABLE x")
