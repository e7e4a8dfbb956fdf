"""Erasure in the examples: the audit blanks a deleted user, the notifier forgets them, the
directory's tombstones go once no token of theirs can verify."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from consumers.applier import ProjectionApplier
from downstream_examples.audit.projection import AuditProjection
from downstream_examples.lazy_directory.members import forget
from downstream_examples.lazy_directory.projection import DirectoryProjection
from downstream_examples.lazy_directory.settings import TombstoneSettings
from downstream_examples.lazy_directory.tombstones import prune_tombstones
from downstream_examples.notifier.projection import NotifierProjection
from events import (
    Envelope,
    UserDeleted,
    UserRegistered,
    UserUpdated,
    event_from_envelope,
    to_envelope,
)
from events.erasure import redact_data, redact_envelope
from infra.mail import FileMailbox
from tests.downstream.test_audit import apply, history, recorded
from tests.downstream.test_notifier import (
    SENDER,
    FlakyMailer,
    Notifications,
    deleted,
    password_changed,
    registered,
)
from userbus.cli import app

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 1, tzinfo=UTC)


# --- audit ---------------------------------------------------------------------------------


def life(user_id: uuid.UUID) -> list[Envelope]:
    """Registered with a display name, renamed, deleted."""
    events = [
        UserRegistered(
            user_id=user_id, username="carol", email="carol@example.com", role="user",
            registered_at=NOW, display_name="Carol C.",
        ),
        UserUpdated(user_id=user_id, updated_at=NOW, display_name="Carol D."),
        UserDeleted(user_id=user_id, username="carol", deleted_at=NOW),
    ]  # fmt: skip
    return [to_envelope(e, sequence=n, source="/test") for n, e in enumerate(events, start=1)]


async def refused(engine: AsyncEngine, statement: str, **values: Any) -> bool:
    """Whether the audit's trigger refuses the statement."""
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement), values)
    except DBAPIError as exc:
        return "append-only" in str(exc)
    return False


async def test_the_audit_blanks_a_deleted_users_pii_and_keeps_the_facts(
    engine: AsyncEngine,
) -> None:
    gone, other = life(uuid.uuid4()), history()
    await apply(engine, gone[:2] + other)  # registered and renamed, in one batch
    await apply(engine, gone[2:])  # deleted, in a later one

    rows = await recorded(engine, gone[0].user_id)
    assert [(r["event_id"], r["type"], r["sequence"], r["occurred_at"]) for r in rows] == [
        (e.id, e.type, e.sequence, e.time) for e in gone
    ]
    assert [r["data"] for r in rows] == [redact_data(e.data, e.user_id) for e in gone]
    assert "carol" not in str(rows).lower()
    # Another user's rows are as delivered (their history holds a deletion too, of "audited").
    others = await recorded(engine, other[0].user_id)
    assert [r["data"] for r in others] == [redact_data(e.data, e.user_id) for e in other]


async def test_the_audits_redaction_in_sql_is_the_contracts(engine: AsyncEngine) -> None:
    await apply(engine, [])
    envelopes = life(uuid.uuid4()) + history()
    async with engine.connect() as conn:
        for envelope in envelopes:
            in_sql = await conn.scalar(
                text("SELECT audit.redacted(CAST(:data AS jsonb), :user_id)"),
                {"data": json.dumps(envelope.data), "user_id": envelope.user_id},
            )
            assert in_sql == redact_envelope(envelope.model_dump(mode="json"))["data"]


async def test_the_trigger_lets_through_only_a_deleted_users_redaction(
    engine: AsyncEngine,
) -> None:
    live = life(uuid.uuid4())[:2]
    await apply(engine, live)
    gone = life(uuid.uuid4())
    # Delivered out of order, bypassing the tracking records: the deletion first, so the
    # registration stays as delivered, to be redacted by hand below.
    async with engine.begin() as conn:
        await apply_direct(conn, gone[2], gone[0])
    redact = "UPDATE audit.events SET data = audit.redacted(data, user_id) WHERE user_id = :u"

    assert await refused(engine, redact, u=live[0].user_id)  # not deleted: no redaction
    for statement in (
        'UPDATE audit.events SET data = data || \'{"username": "mallory"}\' WHERE user_id = :u',
        "UPDATE audit.events SET data = audit.redacted(data, user_id), sequence = 9"
        " WHERE user_id = :u",
        "UPDATE audit.events SET data = audit.redacted(data, user_id), recorded_at = now()"
        " WHERE user_id = :u",
        "UPDATE audit.events SET type = 'Forged' WHERE user_id = :u",
        "DELETE FROM audit.events WHERE user_id = :u",
    ):
        assert await refused(engine, statement, u=gone[0].user_id), statement
    assert "carol" in str(await recorded(engine, gone[0].user_id))

    assert not await refused(engine, redact, u=gone[0].user_id)
    assert "carol" not in str(await recorded(engine, gone[0].user_id))


async def apply_direct(conn: Any, *envelopes: Envelope) -> None:
    """Apply envelopes with the projection alone, in the order given."""
    for envelope in envelopes:
        await AuditProjection().apply(conn, event_from_envelope(envelope), envelope)


# --- notifier ------------------------------------------------------------------------------


@pytest.fixture
async def mail(engine: AsyncEngine, tmp_path: Path) -> Notifications:
    """The notifier's tables on this test's database, and an empty file mailbox."""
    applier = ProjectionApplier(NotifierProjection())
    async with engine.begin() as conn:
        await applier.setup(conn)
    return Notifications(engine, applier, FileMailbox(tmp_path / "mailbox", SENDER))


async def test_a_mail_to_an_erased_address_is_never_queued(mail: Notifications) -> None:
    registration = registered()
    redacted = Envelope.model_validate(redact_envelope(registration.model_dump(mode="json")))

    await mail.apply(redacted)

    assert await mail.outgoing() == []


async def test_a_deleted_user_leaves_no_address_in_sent_or_failed_mails(
    mail: Notifications, tmp_path: Path
) -> None:
    registration, other = registered(), registered()
    await mail.apply(registration, other)
    assert await mail.sender().send_due() == 2
    await mail.apply(password_changed(registration))
    failing = FlakyMailer(FileMailbox(tmp_path / "never", "x <x@userbus.test>"), failures=99)
    await mail.sender(failing, max_attempts=1).send_due()
    assert {row["status"] for row in await mail.outgoing()} == {"sent", "failed"}

    await mail.apply(deleted(registration, 3))

    rows = await mail.outgoing()
    assert [row["user_id"] for row in rows] == [other.user_id]
    assert registration.data["email"] not in str(rows)
    async with mail.engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM notifier.recipients WHERE user_id = :u"),
            {"u": registration.user_id},
        )
    assert left == 0


# --- directory -----------------------------------------------------------------------------


async def test_tombstones_go_once_no_token_of_their_user_can_verify(engine: AsyncEngine) -> None:
    settings = TombstoneSettings(database_url="postgresql://unused/db")
    now = datetime.now(UTC)
    old, recent = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await DirectoryProjection().create_tables(conn)
        await forget(conn, old, now - settings.tombstone_keep - timedelta(minutes=1))
        await forget(conn, recent, now - timedelta(seconds=settings.access_token_ttl_seconds))

    assert await prune_tombstones(engine, keep=settings.tombstone_keep, batch=1) == 1

    async with engine.connect() as conn:
        left = await conn.scalars(text("SELECT user_id FROM directory.deleted_users"))
        assert list(left) == [recent]


async def test_the_command_prunes_the_directory_and_a_missing_one_is_no_error(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    env = {"USERBUS_DATABASE_URL": isolated_database_url}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["prune", "directory"], env=env)
    assert result.exit_code == 0, result.output
    assert "pruned 0 directory tombstones" in result.output

    async with engine.begin() as conn:
        await DirectoryProjection().create_tables(conn)
        await forget(conn, uuid.uuid4(), datetime.now(UTC) - timedelta(days=1))
    result = await asyncio.to_thread(CliRunner().invoke, app, ["prune", "directory"], env=env)
    assert "pruned 1 directory tombstones" in result.output
