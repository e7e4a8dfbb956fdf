"""The replay's fast path (raw JSON, bulk writes) gives exactly what the models and applier give."""

import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.replay import ReplayOutcome, replay
from consumers.replay.raw import BulkRows
from consumers.replay.sources import SourcePage
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, UserRegistered, UserUpdated, to_envelope
from tests.integration.history import make_history

pytestmark = pytest.mark.integration


class RawList:
    """A history of raw entries (JSON as a broker would hold it), by index."""

    kind = "list"

    def __init__(self, entries: Sequence[str]) -> None:
        self._entries = list(entries)

    async def total(self) -> int:
        return len(self._entries)

    def progress_at(self, position: str, events: int) -> int:
        return int(position or 0)

    def resume_from(self, position: str) -> str:
        return position

    async def pages(self, after: str, size: int) -> AsyncIterator[SourcePage]:
        for start in range(int(after or 0), len(self._entries), size):
            chunk = self._entries[start : start + size]
            yield SourcePage(chunk, None, str(start + len(chunk)), len(chunk))

    async def events_of(self, user_id: UUID, after_sequence: int) -> None:
        return None

    async def close(self) -> None:
        return None


class ModelsOnly(ProfileProjection):
    """The profile projection without its fast path: every event through the models."""

    def bulk_rows(self) -> BulkRows | None:
        return None


def _raw(envelope: Envelope, **changes: Any) -> str:
    document = json.loads(envelope.model_dump_json())
    for key, value in changes.items():
        if key.startswith("data_"):
            document["data"][key.removeprefix("data_")] = value
        else:
            document[key] = value
    return json.dumps(document)


def _newcomer_id(number: int) -> UUID:
    return UUID(int=0xABCDEF00 + number)  # letters in it, so that its case can differ


def _newcomer(number: int, **changes: Any) -> str:
    """A registration of a user of its own, its JSON changed as given."""
    event = UserRegistered(
        user_id=_newcomer_id(number),
        username=f"newcomer{number}",
        email=f"newcomer{number}@example.com",
        role="user",
        registered_at=datetime.now(UTC),
        status=changes.pop("status", "active"),
    )
    return _raw(to_envelope(event, sequence=1, source="/t"), **changes)


def tricky_history() -> list[str]:
    """A history with what the fast path must refuse or get right, spread over many pages."""
    history = make_history(3_000, seed=11)
    entries = [e.model_dump_json() for e in history]
    first = next(e for e in history if e.type == "UserRegistered")
    clear = UserUpdated(user_id=first.user_id, updated_at=first.time, display_name=None)
    null_email = UserUpdated(user_id=first.user_id, updated_at=first.time, email=None)
    extras = {
        # Delivered again (a stream keeps re-published entries): duplicates.
        2_950: [entries[10], entries[11], entries[2_000]],
        # A cleared display name after a jump (a gap), then an email present as null.
        2_960: [
            to_envelope(clear, sequence=900, source="/t").model_dump_json(),
            to_envelope(null_email, sequence=901, source="/t").model_dump_json(),
        ],
        # Forms the fast path leaves to the models, each in a page of its own.
        100: [_newcomer(1, subject=str(_newcomer_id(1)).upper())],
        400: [_newcomer(2, time="2026-01-01T00:00:00")],
        700: [_newcomer(3, data_email="no-at-sign")],
        1_000: [_newcomer(4, type="UserTeleported")],
        1_300: ["{not json"],
        1_600: [_newcomer(6, data_email="a@b.example\n")],
        1_900: [_newcomer(7, status="pending")],
        2_200: [_newcomer(8, data_registered_at=1_700_000_000)],
    }
    out: list[str] = []
    for index, entry in enumerate(entries):
        out.extend(extras.get(index, []))
        out.append(entry)
    return out


async def rebuilt(engine: AsyncEngine) -> tuple[list[Any], list[Any]]:
    """The profile table and its tracking records (without when each was written)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM profiles.profiles ORDER BY user_id"))).all()
        tracking = await conn.execute(
            text("SELECT subject, sequence FROM profiles.tracking ORDER BY subject")
        )
        return [tuple(r) for r in rows], [tuple(r) for r in tracking.all()]


def counts(outcome: ReplayOutcome) -> tuple[int, int, int, int, list[str]]:
    """What happened to the events, in numbers (and which were refused, why)."""
    e = outcome.events
    return e.applied, e.duplicates, e.skipped, e.gaps, sorted(r for _, r in e.rejected)


async def test_the_fast_path_gives_what_the_models_give(
    engine: AsyncEngine, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    entries = tricky_history()
    with caplog.at_level(logging.DEBUG, logger="consumers.replay.bulk"):
        fast = await replay(ProfileProjection(), engine, RawList(entries), batch_size=97)
    refused = [r for r in caplog.records if "goes through the models" in r.getMessage()]
    fast_tables = await rebuilt(engine)

    models = await replay(ModelsOnly(), engine, RawList(entries), batch_size=97)

    assert await rebuilt(engine) == fast_tables
    assert counts(fast) == counts(models)
    pages = -(-len(entries) // 97)
    assert 8 <= len(refused) < pages / 2  # both paths ran: most pages fast, the odd ones not
    _, duplicates, _, gaps, rejected = counts(fast)
    assert duplicates >= 3
    assert gaps >= 1
    assert len(rejected) == 2  # the two addresses the contract refuses
