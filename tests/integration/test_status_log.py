"""`userbus status` compares each projection with the event log, not only with the stream."""

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from consumers.app import create_consumer_app
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.projection import ProfileProjection
from tests.integration.helpers import publish_raw
from tests.integration.test_consumer_healing import write_log
from tests.integration.test_faults import EnvelopeLog, backlog, expected_profiles, settle, wire
from userbus.cli import app

pytestmark = pytest.mark.integration


async def status(settings: ConsumerSettings, database_url: str | None) -> str:
    """The output of `userbus status` for the consumer's stream."""
    env = {"USERBUS_BROKER_URL": settings.broker_url, "USERBUS_STREAM": settings.stream}
    if database_url is not None:
        env["USERBUS_DATABASE_URL"] = database_url
    result = await asyncio.to_thread(CliRunner().invoke, app, ["status"], env=env)
    assert result.exit_code == 0, result.output
    return result.output


async def test_status_counts_the_log_events_a_projection_has_not_seen(
    redis_consumer_settings: ConsumerSettings, isolated_database_url: str, engine: AsyncEngine
) -> None:
    # The group of the `profiles` projection, on this test's own stream.
    settings = redis_consumer_settings.model_copy(update={"consumer_group": "profiles"})
    seen, lost = backlog(6), backlog(4)
    await write_log(engine, [*seen, *lost])
    await publish_raw(settings.broker_url, settings.stream, wire(seen))  # the stream lost 4
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    try:
        await settle(settings, engine, await expected_profiles(EnvelopeLog(seen)), timeout=20)
    finally:
        await consumer.stop()

    output = await status(settings, isolated_database_url)
    assert f"profiles: 0 behind the stream, {len(lost)} behind the log" in output
    assert "audit: no group on the stream, behind the log unknown (no audit.tracking" in output

    without = await status(settings, None)
    assert "profiles: 0 behind the stream, behind the log unknown" in without
