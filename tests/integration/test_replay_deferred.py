"""A fresh shadow's first pass writes its tracking records once, at its end, and only when safe."""

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay import ReplayError, deferred, replay
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.projection import ProfileProjection
from infra.settings import asyncpg_dsn, sqlalchemy_url
from tests.integration.history import expected_profiles, make_history, seed_outbox
from tests.integration.test_replay_fast_path import rebuilt
from tests.integration.test_replay_in_database import (
    ModelsOnly,
    replay_failing_at_the_third_page,
)

pytestmark = pytest.mark.integration


def _count_settles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions `settle` is called at, as it is called."""
    settled: list[int] = []
    real = deferred.settle

    async def counting(conn: asyncpg.Connection, schema: str, log: str, position: int) -> None:
        settled.append(position)
        await real(conn, schema, log, position)

    for module in ("consumers.replay.deferred", "consumers.replay.in_database"):
        monkeypatch.setattr(f"{module}.settle", counting)
    return settled


async def test_the_first_pass_settles_the_tracking_records_once_at_its_end(
    engine: AsyncEngine, isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(1_200, seed=21)
    await seed_outbox(isolated_database_url, history)
    settled = _count_settles(monkeypatch)
    url = sqlalchemy_url(isolated_database_url)

    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url), batch_size=100)

    assert (outcome.path, outcome.handed_over) == ("in-database", 0)
    assert settled == [len(history)]
    rows, tracked = await rebuilt(engine)
    expected_rows, expected_tracking = expected_profiles(history)
    assert [r[0] for r in rows] == sorted(expected_rows)
    assert dict(tracked) == expected_tracking


async def test_a_log_without_unique_sequences_keeps_the_records_page_by_page(
    engine: AsyncEngine, isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(1_200, seed=22)
    await seed_outbox(isolated_database_url, history)
    conn = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        # Without it, a repeated sequence could pass for the next one in the log.
        await conn.execute("ALTER TABLE auth.outbox DROP CONSTRAINT outbox_subject_sequence_key")
    finally:
        await conn.close()
    settled = _count_settles(monkeypatch)
    url = sqlalchemy_url(isolated_database_url)

    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url), batch_size=100)
    fast = await rebuilt(engine)
    await replay(ModelsOnly(), engine, OutboxLogSource(url), batch_size=100)

    assert outcome.path == "in-database"
    assert settled == []
    assert fast == await rebuilt(engine)


async def test_a_shadow_built_in_the_database_cannot_be_resumed_by_the_client_build(
    engine: AsyncEngine, isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(600, seed=23)
    await seed_outbox(isolated_database_url, history)
    url = sqlalchemy_url(isolated_database_url)
    await replay_failing_at_the_third_page(engine, url, monkeypatch, batch_size=100)

    # Its tracking records are not written yet: the client build would read none.
    with pytest.raises(ReplayError, match="built in the database"):
        await replay(ModelsOnly(), engine, OutboxLogSource(url), resume=True)
    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url), resume=True)

    assert (outcome.path, outcome.resumed_at) == ("in-database", "200")
    rows, tracked = await rebuilt(engine)
    expected_rows, expected_tracking = expected_profiles(history)
    assert [r[0] for r in rows] == sorted(expected_rows)
    assert dict(tracked) == expected_tracking


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.1])
async def test_settling_at_a_position_takes_each_users_last_sequence_up_to_it(
    isolated_database_url: str, fraction: float
) -> None:
    # At the end of a pass no event lies beyond the position; before a page the models
    # take, most of the log does: users with events on both sides get their sequence up
    # to the position, those only after it none.
    history = make_history(2_000, seed=24)
    await seed_outbox(isolated_database_url, history)
    position = int(len(history) * fraction)
    conn = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        await conn.execute("CREATE SCHEMA settle_test")
        await conn.execute(
            "CREATE TABLE settle_test.tracking (subject uuid PRIMARY KEY, sequence int NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(f"CREATE TABLE settle_test.{deferred.MARK_TABLE} ()")
        async with conn.transaction():
            await deferred.settle(conn, "settle_test", "auth", position)
        found = dict(await conn.fetch("SELECT subject, sequence FROM settle_test.tracking"))
        expected = dict(
            await conn.fetch(
                "SELECT subject, max(sequence) FROM auth.outbox WHERE id <= $1 GROUP BY subject",
                position,
            )
        )
        assert not await deferred.is_deferred(conn, "settle_test")
    finally:
        await conn.close()
    assert found == expected
    assert len(found) == len({e.user_id for e in history[:position]})
