"""The `userbus` command: schema export, migrations, replay, and clear configuration errors."""

import asyncio
import json

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from consumers.settings import ConsumerSettings
from events import EVENT_TYPES
from tests.integration.test_relay import write_history
from userbus.cli import app, main

pytestmark = pytest.mark.integration


def test_events_schema_prints_the_envelope_and_every_event() -> None:
    result = CliRunner().invoke(app, ["events", "schema"])
    assert result.exit_code == 0
    schemas = json.loads(result.stdout)
    assert set(schemas) == {"Envelope"} | set(EVENT_TYPES)
    assert {"UserRegistered", "UserUpdated", "UserRoleChanged", "PasswordResetRequested"} <= set(
        schemas
    )
    assert "sequence" in schemas["Envelope"]["properties"]


def test_an_unknown_projection_is_a_usage_error_naming_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["consume", "nonexistent"])
    assert result.exit_code == 2
    assert "profiles" in result.output


def test_missing_configuration_is_reported_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("USERBUS_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.argv", ["userbus", "relay"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "USERBUS_DATABASE_URL" in error
    assert "Traceback" not in error


def test_migrate_is_idempotent(isolated_database_url: str) -> None:
    env = {"USERBUS_DATABASE_URL": isolated_database_url}
    for _ in range(2):
        result = CliRunner().invoke(app, ["migrate"], env=env)
        assert result.exit_code == 0, result.output


async def test_replay_rebuilds_the_projection_from_the_event_log(
    engine: AsyncEngine, consumer_settings: ConsumerSettings
) -> None:
    users = await write_history(engine, users=3, changes=1)
    env = {"USERBUS_DATABASE_URL": consumer_settings.database_url}
    # The command runs its own event loop: run it in a thread, away from the test's loop.
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["replay", "profiles", "--source", "outbox"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "3 applied" in result.output
    assert "3 not handled" in result.output  # the password changes: profiles ignore them
    async with engine.connect() as conn:
        names = set((await conn.execute(text("SELECT username FROM profiles.profiles"))).scalars())
    assert names == {user.username for user in users}
