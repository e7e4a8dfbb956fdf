"""Batches as the consumers apply them: tracking written once per user, writes in bulk, in order."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import ProjectionApplier
from events import Envelope, UserDeleted, to_envelope
from tests.downstream.test_profiles import History, apply, profile_row

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def position(engine: AsyncEngine, user_id: uuid.UUID) -> int | None:
    """The last sequence the profile projection recorded for `user_id`."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT sequence FROM profiles.tracking WHERE subject = :id"), {"id": user_id}
            )
        ).scalar()


def deleted(history: History) -> Envelope:
    """The user's deletion, numbered after its other events."""
    history.sequence += 1
    event = UserDeleted(user_id=history.user_id, username=history.username, deleted_at=NOW)
    return to_envelope(event, sequence=history.sequence, source="/test")


async def test_a_new_users_events_in_one_batch_leave_its_position_at_the_last(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    batch = [alice.registered(), alice.updated(display_name="A"), alice.updated(display_name="B")]
    outcome = await apply(engine, applier, *batch)
    assert (outcome.applied, outcome.duplicates) == (3, 0)
    assert await position(engine, alice.user_id) == 3

    again = await apply(engine, applier, *batch)
    assert (again.applied, again.duplicates) == (0, 3)
    row = await profile_row(engine, alice.user_id)
    assert row is not None
    assert row["display_name"] == "B"


async def test_a_malformed_event_does_not_move_a_new_users_position(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    valid_update = alice.updated(display_name="Al")
    malformed = valid_update.model_copy(update={"data": {**valid_update.data, "email": "nope"}})
    outcome = await apply(engine, applier, alice.registered(), malformed)
    assert outcome.applied == 1
    [(_, why)] = outcome.rejected
    assert why.startswith("email:")
    assert await position(engine, alice.user_id) == 1

    # The event at that sequence, sent again intact, still applies.
    retried = await apply(engine, applier, valid_update)
    assert retried.applied == 1
    assert await position(engine, alice.user_id) == 2


async def test_the_same_event_twice_in_one_batch_applies_once(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    alice = History()
    registered = alice.registered()
    outcome = await apply(engine, applier, registered, registered)
    assert (outcome.applied, outcome.duplicates) == (1, 1)
    assert await position(engine, alice.user_id) == 1


async def test_known_and_new_users_mixed_in_a_batch_each_end_at_their_last_event(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    known, new = History(), History()
    await apply(engine, applier, known.registered())
    outcome = await apply(
        engine,
        applier,
        known.updated(display_name="Known"),
        new.registered(),
        new.updated(email="new@example.com"),
    )
    assert (outcome.applied, outcome.duplicates) == (3, 0)
    assert (await position(engine, known.user_id), await position(engine, new.user_id)) == (2, 2)
    known_row, new_row = (
        await profile_row(engine, known.user_id),
        await profile_row(engine, new.user_id),
    )
    assert known_row is not None
    assert known_row["display_name"] == "Known"
    assert new_row is not None
    assert new_row["email"] == "new@example.com"


async def test_a_registration_then_a_deletion_in_one_batch_leave_no_profile(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    # The registrations before the deletion are inserted first: writing them in bulk must
    # not move the deletion ahead of its user's registration.
    gone, kept = History(), History()
    await apply(engine, applier, gone.registered(), kept.registered(), deleted(gone))
    assert await profile_row(engine, gone.user_id) is None
    assert await profile_row(engine, kept.user_id) is not None


async def test_a_thousand_registrations_in_one_batch_are_all_inserted(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    users = [History(display_name=None if i % 2 else f"User {i}") for i in range(1000)]
    outcome = await apply(engine, applier, *(u.registered() for u in users))
    assert outcome.applied == 1000
    async with engine.connect() as conn:
        count, named, tracked = (
            await conn.execute(
                text(
                    "SELECT count(*), count(display_name), "
                    "(SELECT count(*) FROM profiles.tracking WHERE sequence = 1) "
                    "FROM profiles.profiles"
                )
            )
        ).one()
    assert (count, named, tracked) == (1000, 500, 1000)
