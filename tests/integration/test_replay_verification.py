"""Email verification events in a profile replay: the fast path gives what the models give."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay import replay
from downstream_examples.profiles.projection import ProfileProjection
from events import Event, UserEmailVerified, UserRegistered, UserUpdated, to_envelope
from tests.integration.test_replay_fast_path import ModelsOnly, RawList, counts, rebuilt

pytestmark = pytest.mark.integration

USERS = 300


def verification_history() -> list[str]:
    """Users who register, verify, change their address (unverified again) and verify it."""
    start = datetime.now(UTC) - timedelta(hours=1)
    entries: list[str] = []
    for number in range(USERS):
        user_id = UUID(int=0x5EED0000 + number)
        at = start + timedelta(seconds=number)
        name = f"verifier{number}"
        life: list[Event] = [
            UserRegistered(
                user_id=user_id, username=name, email=f"{name}@example.com", role="user",
                registered_at=at,
            ),
            UserEmailVerified(user_id=user_id, email=f"{name}@example.com", verified_at=at),
            UserUpdated(
                user_id=user_id, updated_at=at, email=f"{name}@example.org", email_verified=False
            ),
            UserEmailVerified(user_id=user_id, email=f"{name}@example.org", verified_at=at),
        ]  # fmt: skip
        entries += [
            to_envelope(event, sequence=n, source="/t").model_dump_json()
            for n, event in enumerate(life, start=1)
        ]
    return entries


async def test_profiles_replay_the_verification_events_alike_on_both_paths(
    engine: AsyncEngine,
) -> None:
    entries = verification_history()
    fast = await replay(ProfileProjection(), engine, RawList(entries), batch_size=97)
    fast_tables = await rebuilt(engine)
    models = await replay(ModelsOnly(), engine, RawList(entries), batch_size=97)

    assert await rebuilt(engine) == fast_tables
    assert counts(fast) == counts(models)
    applied, duplicates, skipped, gaps, rejected = counts(fast)
    # The profile view keeps no flag: each UserEmailVerified is skipped, the rest applied.
    assert (applied, skipped, duplicates, gaps, rejected) == (2 * USERS, 2 * USERS, 0, 0, [])
    rows, _ = fast_tables
    assert len(rows) == USERS
    assert all(row[2].endswith("@example.org") for row in rows)  # the changed address
