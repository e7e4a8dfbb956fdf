"""The profile service's side of the registration saga: its decision and its own outbox."""

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import ProjectionApplier
from consumers.replay import replay
from consumers.sources import EventSource
from downstream_examples.profiles import answers as answers_module
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, UserRegistered, to_envelope
from tests.conftest import unique_username

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def registration(display_name: str | None = None, *, pending: bool = True) -> Envelope:
    name = unique_username()
    event = UserRegistered(
        user_id=uuid.uuid4(), username=name, email=f"{name}@example.com", role="user",
        registered_at=NOW, display_name=display_name,
        status="pending" if pending else "active",
    )  # fmt: skip
    return to_envelope(event, sequence=1, source="/test")


async def apply(engine: AsyncEngine, applier: ProjectionApplier, *envelopes: Envelope) -> None:
    async with engine.begin() as conn:
        await applier.apply_batch(conn, envelopes)


async def answers(engine: AsyncEngine, user_id: UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT o.sequence, o.type, o.payload, p.id IS NOT NULL AS queued "
                "FROM profiles.outbox o LEFT JOIN profiles.outbox_pending p ON p.id = o.id "
                "WHERE o.subject = :id ORDER BY o.id"
            ),
            {"id": user_id},
        )
        return [dict(row._mapping) for row in rows]


async def has_profile(engine: AsyncEngine, user_id: UUID) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT count(*) FROM profiles.profiles WHERE user_id = :id"), {"id": user_id}
        )
        return bool(found)


async def test_an_accepted_registration_gets_its_profile_and_a_queued_answer(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    envelope = registration("Alice")
    await apply(engine, applier, envelope)

    assert await has_profile(engine, envelope.user_id)
    [answer] = await answers(engine, envelope.user_id)
    assert (answer["sequence"], answer["type"], answer["queued"]) == (1, "ProfileCreated", True)
    assert answer["payload"]["source"] == "/userbus/profiles"


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_an_answer_joins_the_trace_of_its_registration(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    traced = registration("Alice").model_copy(
        update={"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    )
    untraced = registration("Moderator")
    await apply(engine, applier, traced, untraced)

    [created] = await answers(engine, traced.user_id)
    [rejected] = await answers(engine, untraced.user_id)
    assert (created["payload"]["traceparent"], created["payload"]["tracestate"]) == (
        TRACEPARENT,
        "vendor=1",
    )
    assert "traceparent" not in rejected["payload"]


async def test_a_refused_registration_gets_no_profile_and_a_rejection(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    envelope = registration("Moderator")
    await apply(engine, applier, envelope)

    assert not await has_profile(engine, envelope.user_id)
    [answer] = await answers(engine, envelope.user_id)
    assert answer["type"] == "ProfileRejected"
    assert answer["payload"]["data"]["reason"] == "display_name_reserved"


async def test_an_active_registration_expects_no_answer(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    envelope = registration("Admin", pending=False)  # no saga: the rule does not apply
    await apply(engine, applier, envelope)

    assert await has_profile(engine, envelope.user_id)
    assert await answers(engine, envelope.user_id) == []


async def test_a_rolled_back_batch_leaves_no_answer(
    engine: AsyncEngine, applier: ProjectionApplier
) -> None:
    envelope = registration()
    async with engine.connect() as conn, conn.begin() as transaction:
        await applier.apply_batch(conn, [envelope])
        await transaction.rollback()

    assert await answers(engine, envelope.user_id) == []
    assert not await has_profile(engine, envelope.user_id)


class Listed(EventSource):
    """A history given as a list."""

    def __init__(self, envelopes: list[Envelope]) -> None:
        self._envelopes = envelopes

    async def batches(self, size: int) -> Any:
        yield self._envelopes


async def test_a_replay_follows_the_answers_given_even_if_the_rule_changed(
    engine: AsyncEngine, applier: ProjectionApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted, refused = registration("Bob"), registration("Staff")
    await apply(engine, applier, accepted, refused)
    monkeypatch.setattr(answers_module, "RESERVED_DISPLAY_NAMES", frozenset({"bob"}))

    await replay(ProfileProjection(), engine, Listed([accepted, refused]))

    assert await has_profile(engine, accepted.user_id)
    assert not await has_profile(engine, refused.user_id)
    assert [a["type"] for a in await answers(engine, accepted.user_id)] == ["ProfileCreated"]
    assert [a["type"] for a in await answers(engine, refused.user_id)] == ["ProfileRejected"]
