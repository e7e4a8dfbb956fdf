"""The `userbus` command: schema export, migrations, replay, and clear configuration errors."""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from typer.testing import CliRunner

from auth.security.audit import AUDIT_LOGGER
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.answers import create_answer_outbox
from downstream_examples.profiles.projection import ProfileProjection
from events import EVENT_TYPES
from infra.brokers import broker_for
from infra.dead_letters import DeadLetter
from infra.kafka.urls import kafka_servers
from infra.publishing import TopicLayout
from producers.settings import RelaySettings
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


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The root and audit loggers as they were, after a test that runs `main()`.

    main() configures the process's logging: handlers on this test's captured stderr,
    which is closed once the test ends, would fail every later test's log lines.
    """
    root, audit = logging.getLogger(), logging.getLogger(AUDIT_LOGGER)
    saved = (list(root.handlers), root.level, list(audit.handlers))
    yield
    root.handlers[:], audit.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])


@pytest.mark.usefixtures("restored_logging")
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
    engine: AsyncEngine, consumer_settings: ConsumerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    users = await write_history(engine, users=3, changes=1)
    env = {
        "USERBUS_DATABASE_URL": consumer_settings.database_url,
        "USERBUS_REPLAY_PROGRESS_SECONDS": "0.000001",
        "USERBUS_REPLAY_BATCH_SIZE": "100",
    }
    # The command runs its own event loop: run it in a thread, away from the test's loop.
    with caplog.at_level(logging.INFO, logger="consumers.replay"):
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["replay", "profiles", "--source", "log"], env=env
        )
    assert result.exit_code == 0, result.output
    assert "replayed profiles from the log (in-database build): 3 applied" in result.output
    assert "3 not handled" in result.output  # the password changes: profiles ignore them
    progress = [r.getMessage() for r in caplog.records if r.name == "consumers.replay"]
    assert progress[0] == "replay profiles: building, starting at 0 of 6"
    assert any("6/6 (100 %) at " in line and "ETA" in line for line in progress)
    async with engine.connect() as conn:
        names = set((await conn.execute(text("SELECT username FROM profiles.profiles"))).scalars())
    assert names == {user.username for user in users}


def test_create_admin_makes_an_admin_who_can_log_in(
    isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"USERBUS_DATABASE_URL": isolated_database_url, "USERBUS_BCRYPT_ROUNDS": "4"}
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        result = CliRunner().invoke(
            app,
            ["users", "create-admin", "root", "--email", "root@example.com", "--password-stdin"],
            input="an admin passphrase\n",
            env=env,
        )
    assert result.exit_code == 0, result.output
    assert "created admin root" in result.output
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT_LOGGER]
    assert line["event"] == "user_registered"
    assert (line["username"], line["role"], line["by"], line["via"]) == (
        "root",
        "admin",
        None,
        "cli",
    )
    assert "passphrase" not in caplog.text

    async def role() -> str:
        engine = create_async_engine(isolated_database_url.replace("://", "+asyncpg://", 1))
        async with engine.connect() as conn:
            value = await conn.scalar(text("SELECT role FROM auth.users WHERE username = 'root'"))
        await engine.dispose()
        return str(value)

    assert asyncio.run(role()) == "admin"
    again = CliRunner().invoke(
        app,
        ["users", "create-admin", "root", "--email", "other@example.com", "--password-stdin"],
        input="an admin passphrase\n",
        env=env,
    )
    assert again.exit_code == 1
    assert "already taken" in again.output


@pytest.mark.parametrize(
    ("username", "email", "password", "message"),
    [
        ("x", "root@example.com", "an admin passphrase", "3-32 characters"),
        ("root", "not-an-email", "an admin passphrase", "invalid email"),
        ("root", "root@example.com", "password", "too common"),
    ],
)
def test_create_admin_refuses_what_the_api_would_refuse(
    isolated_database_url: str, username: str, email: str, password: str, message: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "create-admin", username, "--email", email, "--password-stdin"],
        input=f"{password}\n",
        env={"USERBUS_DATABASE_URL": isolated_database_url},
    )
    assert result.exit_code != 0
    assert message in result.output


@pytest.mark.kafka
def test_kafka_init_creates_the_topic_once(kafka_url: str) -> None:
    topic = f"init.{uuid.uuid4().hex[:8]}"
    env = {
        "USERBUS_BROKER_URL": kafka_url,
        "USERBUS_STREAM": topic,
        "USERBUS_KAFKA_PARTITIONS": "4",
    }
    first = CliRunner().invoke(app, ["kafka", "init"], env=env)
    assert first.exit_code == 0, first.output
    assert f"topic {topic} created" in first.output
    assert f"topic {topic}.dlq created" in first.output
    second = CliRunner().invoke(app, ["kafka", "init"], env=env)
    assert second.exit_code == 0
    assert second.output.count("already exists") == 2
    not_kafka = CliRunner().invoke(
        app, ["kafka", "init"], env={"USERBUS_BROKER_URL": "redis://127.0.0.1:6379/0"}
    )
    assert not_kafka.exit_code == 2


async def test_dlq_list_and_retry_put_dead_letters_back_on_the_stream(
    broker_url: str, stream: str
) -> None:
    queue = broker_for(broker_url).dead_letters(stream)
    await queue.send(
        [
            DeadLetter(b'{"first": 1}', "boom", "profiles", "1-0"),
            DeadLetter(b'{"second": 2}', "bang", "audit", "2-0"),
        ]
    )
    await queue.close()
    env = {"USERBUS_BROKER_URL": broker_url, "USERBUS_STREAM": stream}

    listing = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert "2 dead letter(s)" in listing.output
    assert "error: boom" in listing.output
    assert "group=audit" in listing.output
    lines = listing.output.splitlines()
    first_id = lines[lines.index("    error: boom") - 1].split()[0]

    retried = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "retry", first_id], env=env)
    assert retried.exit_code == 0, retried.output
    assert "put 1 dead letter(s) back" in retried.output
    bodies = [json.dumps(e) async for e in _raw_bodies(broker_url, stream)]
    assert bodies == ['{"first": 1}']
    rest = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "retry"], env=env)
    # Redis deletes a retried letter; Kafka cannot, and a chosen retry leaves its mark behind.
    left = 1 if broker_url.startswith("redis") else 2
    assert f"put {left} dead letter(s) back" in rest.output
    again = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "retry"], env=env)
    assert "put 0 dead letter(s) back" in again.output  # each letter is retried once


async def _raw_bodies(broker_url: str, stream: str) -> AsyncIterator[Any]:
    if broker_url.startswith("redis"):
        client = redis.Redis.from_url(broker_url)
        for _, fields in await client.xrange(stream):
            yield json.loads(fields[b"__data__"])
        await client.aclose()
        return
    consumer = AIOKafkaConsumer(stream, bootstrap_servers=kafka_servers(broker_url),
                                auto_offset_reset="earliest", group_id=None)  # fmt: skip
    await consumer.start()
    try:
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            for record in records:
                yield json.loads(record.value)
    finally:
        await consumer.stop()


async def test_status_reports_groups_backlog_and_dead_letters(
    consumer_settings: ConsumerSettings, relay_settings: RelaySettings, engine: AsyncEngine
) -> None:
    await write_history(engine, users=2, changes=0)  # queued, no relay running: a backlog
    consumer = create_consumer_app(
        consumer_settings.model_copy(update={"consumer_group": "profiles"}), ProfileProjection()
    )
    await consumer.start()
    await consumer.stop()
    env = {
        "USERBUS_BROKER_URL": consumer_settings.broker_url,
        "USERBUS_STREAM": consumer_settings.stream,
        "USERBUS_DATABASE_URL": relay_settings.database_url,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, ["status"], env=env)
    assert result.exit_code == 0, result.output
    assert "relay: 2 committed events not yet published from auth.outbox" in result.output
    assert "group profiles:" in result.output
    assert "dead letters: 0" in result.output


async def test_status_with_the_saga_on_reports_the_answers_too(
    consumer_settings: ConsumerSettings, relay_settings: RelaySettings, engine: AsyncEngine
) -> None:
    env = {
        "USERBUS_BROKER_URL": consumer_settings.broker_url,
        "USERBUS_STREAM": consumer_settings.stream,
        "USERBUS_PROFILE_STREAM": f"{consumer_settings.stream}.answers",
        "USERBUS_DATABASE_URL": relay_settings.database_url,
        "USERBUS_REQUIRE_PROFILE": "true",
    }
    before = await asyncio.to_thread(CliRunner().invoke, app, ["status"], env=env)
    assert before.exit_code == 0, before.output
    assert "relay: no profiles.outbox yet" in before.output

    async with engine.begin() as conn:
        await create_answer_outbox(conn)
    after = await asyncio.to_thread(CliRunner().invoke, app, ["status"], env=env)
    assert after.exit_code == 0, after.output
    assert f"stream {consumer_settings.stream}.answers:" in after.output
    assert "relay: 0 committed events not yet published from profiles.outbox" in after.output


def _capture(monkeypatch: pytest.MonkeyPatch, target: str) -> list[tuple[object, ...]]:
    """Replace a run function of the CLI by one recording its settings; run it at once."""
    calls: list[tuple[object, ...]] = []

    async def record(*args: object) -> None:
        calls.append(args[:-1])  # everything but the stop event

    monkeypatch.setattr(f"userbus.cli.{target}", record)
    monkeypatch.setattr(
        "userbus.cli.run_until_signal", lambda main: asyncio.run(main(asyncio.Event()))
    )
    return calls


def test_relay_of_the_profile_outbox_publishes_to_the_answers_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _capture(monkeypatch, "run_relay")
    env = {"USERBUS_DATABASE_URL": "postgresql://u@db/profiles", "USERBUS_STREAM": "s.users"}
    assert CliRunner().invoke(app, ["relay", "--outbox", "profiles"], env=env).exit_code == 0
    assert CliRunner().invoke(app, ["relay"], env=env).exit_code == 0

    [(answers,), (events,)] = calls
    assert isinstance(answers, RelaySettings)
    assert isinstance(events, RelaySettings)
    assert (answers.outbox_schema, answers.stream) == ("profiles", "userbus.profiles")
    assert (events.outbox_schema, events.stream) == ("auth", "s.users")


def test_consume_registrations_runs_the_auth_side_of_the_saga(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _capture(monkeypatch, "run_registration_saga")
    env = {
        "USERBUS_DATABASE_URL": "postgresql://u@db/auth",
        "USERBUS_REQUIRE_PROFILE": "true",
        "USERBUS_PENDING_REGISTRATION_TIMEOUT_SECONDS": "60",
    }
    result = CliRunner().invoke(app, ["consume", "registrations"], env=env)

    assert result.exit_code == 0, result.output
    [(auth, consumer)] = calls
    assert isinstance(auth, AuthSettings)
    assert isinstance(consumer, ConsumerSettings)
    assert auth.require_profile
    assert auth.pending_registration_timeout_seconds == 60


@pytest.mark.kafka
async def test_the_first_dead_letter_creates_its_topic_with_the_events_layout(
    kafka_url: str,
) -> None:
    topic = f"dlq.{uuid.uuid4().hex[:8]}"
    servers = kafka_servers(kafka_url)
    queue = broker_for(kafka_url).dead_letters(topic, TopicLayout(partitions=3))
    await queue.send([DeadLetter(b'{"first": 1}', "boom", "profiles", "1-0")])
    await queue.close()

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([f"{topic}.dlq"])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 3
    assert [letter.error async for letter in broker_for(kafka_url).dead_letters(topic).read()] == [
        "boom"
    ]
