"""Each example projection replays to the state its live consumer reached; kept tables stay."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import ProjectionApplier
from consumers.jwks import VerifiedClaims
from consumers.projection import Projection
from consumers.replay import replay
from consumers.sources import OutboxLogSource
from downstream_examples.audit.projection import AuditProjection
from downstream_examples.lazy_directory.members import admit_token_holder
from downstream_examples.lazy_directory.projection import DirectoryProjection
from downstream_examples.notifier.projection import NotifierProjection
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, PasswordChanged, UserDeleted, UserRegistered, to_envelope
from infra.settings import sqlalchemy_url
from tests.integration.history import make_history, seed_outbox

pytestmark = pytest.mark.integration

# Columns that say when a row was written, not what it holds: a replay writes again.
WRITTEN_AT = frozenset({"applied_at", "recorded_at"})


async def snapshot(engine: AsyncEngine, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of `schema`, its rows sorted, without the columns of WRITTEN_AT."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        names = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        )
        for name in names.scalars():
            result = await conn.execute(text(f'SELECT * FROM "{schema}"."{name}"'))
            keep = [i for i, key in enumerate(result.keys()) if key not in WRITTEN_AT]
            tables[name] = sorted((tuple(row[i] for i in keep) for row in result), key=repr)
    return tables


async def apply_live(
    engine: AsyncEngine, projection: Projection, history: Sequence[Envelope]
) -> None:
    """What the live consumer does: the history in batches, through the normal path."""
    applier = ProjectionApplier(projection)
    async with engine.begin() as conn:
        await applier.setup(conn)
    for start in range(0, len(history), 100):
        async with engine.begin() as conn:
            await applier.apply_batch(conn, history[start : start + 100])


async def replay_from_log(engine: AsyncEngine, database_url: str, projection: Projection) -> None:
    """Replay `projection` from the test's event log."""
    await replay(projection, engine, OutboxLogSource(sqlalchemy_url(database_url)), batch_size=150)


@pytest.mark.parametrize(
    "projection",
    [ProfileProjection(), AuditProjection(), NotifierProjection(), DirectoryProjection()],
    ids=lambda p: p.name,
)
async def test_a_replay_gives_the_state_the_live_consumer_reached(
    isolated_database_url: str, engine: AsyncEngine, projection: Projection
) -> None:
    # Recent events (mails are owed), pending registrations (the saga's answers).
    history = make_history(800, pending_every=7)
    await seed_outbox(isolated_database_url, history)
    await apply_live(engine, projection, history)
    before = await snapshot(engine, projection.name)

    await replay_from_log(engine, isolated_database_url, projection)

    assert await snapshot(engine, projection.name) == before
    kept = projection.kept_tables & set(before)
    assert all(before[name] for name in kept)  # the kept tables had rows to keep


async def test_the_profile_answers_stay_as_they_were_given(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(400, pending_every=3)
    await seed_outbox(isolated_database_url, history)
    await apply_live(engine, ProfileProjection(), history)
    async with engine.connect() as conn:
        answers = (await conn.execute(text("SELECT * FROM profiles.outbox ORDER BY id"))).all()
    assert {a.type for a in answers} == {"ProfileCreated", "ProfileRejected"}

    await replay_from_log(engine, isolated_database_url, ProfileProjection())

    async with engine.connect() as conn:
        again = (await conn.execute(text("SELECT * FROM profiles.outbox ORDER BY id"))).all()
    assert again == answers  # none added, none lost: the auth service acted on them


def _envelope(event: Any, sequence: int, at: datetime) -> Envelope:
    return to_envelope(event, sequence=sequence, source="/test", time=at)


def _registered(at: datetime) -> Envelope:
    user_id = uuid.uuid4()
    name = f"user{user_id.hex[:10]}"
    event = UserRegistered(
        user_id=user_id, username=name, email=f"{name}@example.com", role="user", registered_at=at
    )
    return _envelope(event, 1, at)


async def test_a_notifier_replay_queues_only_the_mails_the_live_one_had_not_owed_yet(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    stays, leaves, newcomer, quitter = (_registered(at) for _ in range(4))
    applied = [stays, leaves]
    # Events the live notifier has not applied when the replay swaps in.
    pending = [
        _envelope(PasswordChanged(user_id=stays.user_id, changed_at=at, reason="change"), 2, at),
        _envelope(UserDeleted(user_id=leaves.user_id, username="x", deleted_at=at), 2, at),
        newcomer,
        quitter,
        _envelope(UserDeleted(user_id=quitter.user_id, username="y", deleted_at=at), 2, at),
    ]
    await seed_outbox(isolated_database_url, applied + pending)
    await apply_live(engine, NotifierProjection(), applied)
    async with engine.begin() as conn:  # the sender delivered them
        await conn.execute(text("UPDATE notifier.outgoing SET status = 'sent', attempts = 1"))

    await replay_from_log(engine, isolated_database_url, NotifierProjection())

    async with engine.connect() as conn:
        mails = (await conn.execute(text("SELECT * FROM notifier.outgoing"))).all()
    by_event = {mail.event_id: mail for mail in mails}
    assert set(by_event) == {stays.id, pending[0].id, newcomer.id}
    assert by_event[stays.id].status == "sent"  # not sent again
    assert by_event[pending[0].id].status == by_event[newcomer.id].status == "pending"


async def test_a_directory_replay_keeps_the_token_members_and_the_tombstones(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(300)
    await seed_outbox(isolated_database_url, history)
    await apply_live(engine, DirectoryProjection(), history)
    expires = datetime.now(UTC) + timedelta(minutes=15)
    gone = {e.user_id for e in history if e.type == "UserDeleted"}
    known = next(e for e in history if e.type == "UserRegistered" and e.user_id not in gone)
    stranger = uuid.uuid4()  # no event yet: known from a token only
    async with engine.begin() as conn:
        for user_id, name in ((known.user_id, "whoever"), (stranger, "stranger")):
            claims = VerifiedClaims(user_id, name, "user", None, expires)
            await admit_token_holder(conn, claims)
    before = await snapshot(engine, "directory")
    assert before["deleted_users"]

    await replay_from_log(engine, isolated_database_url, DirectoryProjection())

    after = await snapshot(engine, "directory")
    assert after == before
    assert any(row[0] == stranger and row[-1] == "token" for row in after["members"])
