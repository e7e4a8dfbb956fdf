"""AsyncpgPrincipalStore: questions asked in one turn of the event loop share one statement."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import UUID, uuid4

import asyncpg
import pytest

from auth.adapters.principals import MAX_BATCH, AsyncpgPrincipalStore
from tests.conftest import unique_username

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture
async def store(isolated_database_url: str) -> AsyncIterator[AsyncpgPrincipalStore]:
    """A store on a database of this test alone, its pool already open."""
    principals = AsyncpgPrincipalStore(isolated_database_url, max_size=4)
    await principals.standing(uuid4(), None, now=NOW)
    yield principals
    await principals.close()


async def users_with_sessions(database_url: str, count: int) -> list[tuple[UUID, UUID]]:
    """`count` users, each with one live session: their (user id, session id)."""
    conn = await asyncpg.connect(database_url)
    try:
        pairs = [(uuid4(), uuid4()) for _ in range(count)]
        for user_id, session_id in pairs:
            name = unique_username()
            await conn.execute(
                "INSERT INTO auth.users (id, username, email, password_hash, role, status,"
                " created_at, updated_at, version) VALUES ($1, $2, $3, 'h', 'user', 'active',"
                " $4, $4, 1)",
                user_id, name, f"{name}@example.com", NOW,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO auth.sessions (id, user_id, created_at, last_used_at, expires_at)"
                " VALUES ($1, $2, $3, $3, $4)",
                session_id, user_id, NOW, NOW + timedelta(days=1),
            )  # fmt: skip
        return pairs
    finally:
        await conn.close()


async def test_questions_asked_together_go_out_as_one_statement_each_answered_rightly(
    store: AsyncpgPrincipalStore, isolated_database_url: str
) -> None:
    pairs = await users_with_sessions(isolated_database_url, 10)
    (first, first_session), (_, second_session) = pairs[0], pairs[1]
    ghost = uuid4()
    questions: list[tuple[UUID, UUID | None]] = [
        *pairs,  # each user with their own live session
        (first, uuid4()),  # an unknown session
        (first, second_session),  # someone else's session
        (first, None),  # no session
        (ghost, first_session),  # an unknown user
    ]
    sent = store.statements

    answers = await asyncio.gather(*(store.standing(u, s, now=NOW) for u, s in questions))

    assert store.statements - sent == 1
    assert [(a.user.id, a.session_live) if a else None for a in answers] == [
        *((user_id, True) for user_id, _ in pairs),
        (first, False),
        (first, False),
        (first, False),
        None,
    ]


async def test_one_question_asked_twice_is_asked_once_and_each_caller_gets_its_own_user(
    store: AsyncpgPrincipalStore, isolated_database_url: str
) -> None:
    [(user_id, session_id)] = await users_with_sessions(isolated_database_url, 1)

    first, second = await asyncio.gather(
        store.standing(user_id, session_id, now=NOW), store.standing(user_id, session_id, now=NOW)
    )

    assert first is not None
    assert second is not None
    assert first == second
    assert first.user is not second.user


async def test_a_caller_that_gives_up_does_not_cancel_the_answer_of_the_others(
    store: AsyncpgPrincipalStore, isolated_database_url: str
) -> None:
    [(user_id, session_id)] = await users_with_sessions(isolated_database_url, 1)
    leaving = asyncio.create_task(store.standing(user_id, session_id, now=NOW))
    staying = asyncio.create_task(store.standing(user_id, session_id, now=NOW))
    await asyncio.sleep(0)

    leaving.cancel()

    answer = await staying
    assert answer is not None
    assert answer.session_live
    assert leaving.cancelled()


async def test_more_questions_than_a_statement_carries_go_out_in_several(
    store: AsyncpgPrincipalStore,
) -> None:
    sent = store.statements

    answers = await asyncio.gather(
        *(store.standing(uuid4(), None, now=NOW) for _ in range(MAX_BATCH + 1))
    )

    assert answers == [None] * (MAX_BATCH + 1)
    assert store.statements - sent == 2


async def test_a_failing_statement_fails_every_question_of_its_batch_and_no_later_one(
    store: AsyncpgPrincipalStore, isolated_database_url: str
) -> None:
    [(user_id, session_id)] = await users_with_sessions(isolated_database_url, 1)

    results = await asyncio.gather(
        store.standing(user_id, session_id, now=NOW),
        store.standing(cast(UUID, "not a uuid"), None, now=NOW),
        return_exceptions=True,
    )

    assert all(isinstance(result, asyncpg.DataError) for result in results)
    later = await store.standing(user_id, session_id, now=NOW)
    assert later is not None
    assert later.session_live


async def test_a_connection_the_server_ends_mid_statement_does_not_fail_the_question(
    isolated_database_url: str,
) -> None:
    [(user_id, session_id)] = await users_with_sessions(isolated_database_url, 1)
    store = AsyncpgPrincipalStore(isolated_database_url, max_size=1)
    admin = await asyncpg.connect(isolated_database_url)
    try:
        for _ in range(20):
            await store.standing(user_id, session_id, now=NOW)  # the pool has its connection
            [pid] = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            asking = asyncio.create_task(store.standing(user_id, session_id, now=NOW))
            await asyncio.sleep(0)  # the statement is on its way

            await admin.execute("SELECT pg_terminate_backend($1)", pid["pid"])

            answer = await asking
            assert answer is not None
            assert answer.session_live
    finally:
        await admin.close()
        await store.close()
