"""The shadow is built unlogged without secondary indexes, then made durable before the swap."""

from typing import ClassVar

import pytest
from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, Table, Text, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.projection import Projection
from consumers.replay import replay
from consumers.replay.durability import make_durable
from consumers.replay.shadow import prepare_shadow
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, Event
from infra.settings import sqlalchemy_url
from tests.integration.history import make_history, seed_outbox
from tests.integration.test_replay_resume import (
    CrashError,
    FailingAfter,
    assert_profiles_equal,
    checkpoint,
)

pytestmark = pytest.mark.integration

SHADOW = "profiles__replay"


async def persistence(engine: AsyncEngine, schema: str) -> dict[str, str]:
    """relpersistence ('p' logged, 'u' unlogged) of each table of `schema`."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT c.relname, c.relpersistence::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relkind = 'r'"
            ),
            {"schema": schema},
        )
        return {name: kind for name, kind in found.all()}


async def indexes(engine: AsyncEngine, schema: str) -> set[str]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE schemaname = :schema"),
            {"schema": schema},
        )
        return set(found.scalars())


async def crashed_replay(engine: AsyncEngine, database_url: str, pages: int) -> None:
    """A replay of the seeded log stopped after `pages` pages of 500, its shadow left."""
    source = FailingAfter(OutboxLogSource(sqlalchemy_url(database_url)), pages)
    with pytest.raises(CrashError):
        await replay(ProfileProjection(), engine, source, batch_size=500)


async def test_the_shadow_builds_unlogged_and_the_swapped_in_tables_are_logged_and_indexed(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(3_000)
    await seed_outbox(isolated_database_url, history)
    await crashed_replay(engine, isolated_database_url, 2)

    during = await persistence(engine, SHADOW)
    assert during == {
        "profiles": "u",
        "tracking": "u",
        "replay_checkpoint": "u",
        "replay_deferred_indexes": "u",
    }
    assert "profiles_username_lower" not in await indexes(engine, SHADOW)
    assert {"profiles_pkey", "tracking_pkey"} <= await indexes(engine, SHADOW)
    async with engine.connect() as conn:
        deferred = (
            await conn.execute(text(f"SELECT definition FROM {SHADOW}.replay_deferred_indexes"))
        ).scalars()
        assert [d.split(" USING ")[0] for d in deferred] == [
            f"CREATE INDEX profiles_username_lower ON {SHADOW}.profiles"
        ]

    outcome = await replay(
        ProfileProjection(),
        engine,
        OutboxLogSource(sqlalchemy_url(isolated_database_url)),
        resume=True,
        batch_size=500,
    )

    assert outcome.resumed_at == "1000"  # went on from the unlogged checkpoint
    await assert_profiles_equal(engine, history)
    live = await persistence(engine, "profiles")
    assert (live["profiles"], live["tracking"]) == ("p", "p")
    assert "profiles_username_lower" in await indexes(engine, "profiles")
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT to_regnamespace('profiles__replay')")) is None


async def test_a_shadow_a_server_crash_emptied_makes_resume_start_over(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(3_000, seed=5)
    await seed_outbox(isolated_database_url, history)
    await crashed_replay(engine, isolated_database_url, 3)
    assert await checkpoint(engine) is not None
    # What crash recovery does to unlogged tables: they come back empty.
    async with engine.begin() as conn:
        for name in await persistence(engine, SHADOW):
            await conn.execute(text(f'TRUNCATE "{SHADOW}"."{name}"'))

    outcome = await replay(
        ProfileProjection(),
        engine,
        OutboxLogSource(sqlalchemy_url(isolated_database_url)),
        resume=True,
        batch_size=500,
    )

    assert outcome.resumed_at == ""  # no checkpoint: the whole log again, never half of it
    assert outcome.events.applied + outcome.events.skipped == len(history)
    await assert_profiles_equal(engine, history)
    live = await persistence(engine, "profiles")
    assert (live["profiles"], live["tracking"]) == ("p", "p")


parents = MetaData(schema="linked")
parent = Table("parent", parents, Column("id", Integer, primary_key=True))
child = Table(
    "child",
    parents,
    Column("id", Integer, primary_key=True),
    Column("parent_id", Integer, ForeignKey(parent.c.id), nullable=False),
    Column("label", Text),
)
Index("child_label", child.c.label)


class LinkedProjection(Projection):
    """Two rebuilt tables, one referencing the other: only their shadow is made here."""

    name = "linked"
    handles: ClassVar[frozenset[type[Event]]] = frozenset()
    metadata = parents

    async def apply(self, conn: AsyncConnection, event: Event, envelope: Envelope) -> None:
        raise AssertionError("no event is applied in this test")


async def test_tables_that_reference_each_other_go_unlogged_and_logged_in_order(
    engine: AsyncEngine,
) -> None:
    shadow = LinkedProjection().in_schema("linked__replay")
    await prepare_shadow(engine, shadow, "log", resume=False)
    assert set((await persistence(engine, "linked__replay")).values()) == {"u"}
    assert "child_label" not in await indexes(engine, "linked__replay")
    async with engine.begin() as conn:
        await conn.execute(text('INSERT INTO "linked__replay".parent VALUES (1)'))
        await conn.execute(text("INSERT INTO \"linked__replay\".child VALUES (1, 1, 'a')"))

    assert await make_durable(engine, shadow) is True
    assert await make_durable(engine, shadow) is False  # a resumed replay: nothing left to do

    assert set((await persistence(engine, "linked__replay")).values()) == {"p"}
    assert "child_label" in await indexes(engine, "linked__replay")
    async with engine.connect() as conn:
        assert await conn.scalar(text('SELECT label FROM "linked__replay".child')) == "a"
