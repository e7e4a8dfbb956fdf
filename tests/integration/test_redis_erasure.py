"""Erasure on a Redis Stream: a user's entries replaced by redacted copies, others untouched."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis

from events import UserDeleted, UserRegistered, dead_letter_stream, to_envelope
from events.erasure import redact_envelope
from infra.brokers import broker_for
from infra.redis.wire import STREAM_FIELD
from tests.integration.helpers import publish_raw

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def life(name: str) -> tuple[uuid.UUID, list[str], list[str]]:
    """A user registered and deleted: their id, the envelopes as sent, and redacted."""
    user_id = uuid.uuid4()
    events = [
        UserRegistered(
            user_id=user_id, username=name, email=f"{name}@example.com", role="user",
            registered_at=NOW,
        ),
        UserDeleted(user_id=user_id, username=name, deleted_at=NOW),
    ]  # fmt: skip
    sent = [
        to_envelope(event, sequence=n, source="/test").model_dump(mode="json")
        for n, event in enumerate(events, start=1)
    ]
    # As the log holds it after redaction (the outbox's jsonb text).
    redacted = [json.dumps(redact_envelope(envelope)) for envelope in sent]
    return user_id, [json.dumps(envelope) for envelope in sent], redacted


async def entries(redis_url: str, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of the stream, in order."""
    client = redis.Redis.from_url(redis_url)
    try:
        found: Any = await client.xrange(stream)
        return list(found)
    finally:
        await client.aclose()


async def test_the_users_entries_are_replaced_and_others_stay(redis_url: str, stream: str) -> None:
    gone, gone_sent, gone_redacted = life("erased_one")
    _, kept_sent, _ = life("bystander")
    await publish_raw(redis_url, stream, [p.encode() for p in (*gone_sent, *kept_sent)])
    await publish_raw(redis_url, dead_letter_stream(stream), [gone_sent[0].encode()])
    broker = broker_for(redis_url)
    since = datetime.now(UTC) - timedelta(minutes=5)

    erased = await broker.erase(stream, {gone: gone_redacted}, since=since)

    assert (erased.removed, erased.appended, erased.dead_letters_removed) == (2, 2, 1)
    assert erased.scanned == 5
    values = [
        fields[STREAM_FIELD.encode()].decode() for _, fields in await entries(redis_url, stream)
    ]
    # The bystander's entries as they were, then the erased user's redacted history, in order.
    assert values == [*kept_sent, *gone_redacted]
    assert "erased_one" not in str(values)
    assert await entries(redis_url, dead_letter_stream(stream)) == []

    # Again: the copies are recognised, nothing changes.
    again = await broker.erase(stream, {gone: gone_redacted}, since=since)
    assert (again.removed, again.appended, again.dead_letters_removed) == (0, 0, 0)
    assert len(await entries(redis_url, stream)) == 4


async def test_the_scan_starts_at_since(redis_url: str, stream: str) -> None:
    user_id, sent, redacted = life("too_old_to_scan")
    await publish_raw(redis_url, stream, [p.encode() for p in sent])

    erased = await broker_for(redis_url).erase(
        stream, {user_id: redacted}, since=datetime.now(UTC) + timedelta(minutes=5)
    )

    assert (erased.scanned, erased.removed) == (0, 0)
    assert len(await entries(redis_url, stream)) == 2


async def test_a_stream_that_never_held_the_user_is_left_alone(redis_url: str, stream: str) -> None:
    user_id, _, redacted = life("never_published")
    erased = await broker_for(redis_url).erase(stream, {user_id: redacted}, since=NOW)
    assert (erased.removed, erased.appended) == (0, 0)
    assert await entries(redis_url, stream) == []
