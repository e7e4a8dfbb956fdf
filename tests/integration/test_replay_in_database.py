"""The in-database replay (SQL from the log in the same database) gives what the models give."""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from consumers.applier import ProjectionApplier
from consumers.replay import replay, staging
from consumers.replay.raw import BulkRows
from consumers.replay.sql_checks import timestamp_ok
from consumers.replay.sql_rows import SqlRows
from consumers.replay.stamp import stamp
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.answers import EVENT_SOURCE
from downstream_examples.profiles.projection import ProfileProjection
from events import (
    Envelope,
    ProfileCreated,
    ProfileRejected,
    UserRegistered,
    UserUpdated,
    to_envelope,
)
from events.erasure import redact_envelope
from infra.settings import asyncpg_dsn, sqlalchemy_url
from producers.outbox import outbox_row, outbox_table
from tests.integration.history import expected_profiles, make_history, seed_outbox
from tests.integration.test_replay_fast_path import counts, rebuilt

pytestmark = pytest.mark.integration

_COLUMNS = ["event_id", "subject", "sequence", "type", "payload", "occurred_at"]


class ModelsOnly(ProfileProjection):
    """The profile projection without either fast path: every event through the models."""

    def bulk_rows(self) -> BulkRows | None:
        return None

    def sql_rows(self) -> SqlRows | None:
        return None


def _document(envelope: Envelope, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(envelope.model_dump_json())
    for key, value in changes.items():
        if key.startswith("data_"):
            document["data"][key.removeprefix("data_")] = value
        else:
            document[key] = value
    return document


def _row(
    document: dict[str, Any], *, subject: uuid.UUID | None = None, sequence: int | None = None
) -> tuple[Any, ...]:
    """An outbox row; its columns as the producer writes them unless told otherwise."""
    try:
        event_id = uuid.UUID(str(document.get("id")))
    except ValueError:
        event_id = uuid.uuid4()
    return (
        event_id,
        subject or uuid.UUID(str(document["subject"])),
        sequence or int(document["sequence"]),
        str(document.get("type")),
        json.dumps(document),
        datetime.now(UTC),
    )


def _registration(number: int, **changes: Any) -> dict[str, Any]:
    """A registration of a user of its own, its JSON changed as given."""
    event = UserRegistered(
        user_id=uuid.UUID(int=0xABCDEF00 + number),
        username=f"edge{number}",
        email=f"edge{number}@example.com",
        role="user",
        registered_at=datetime.now(UTC),
        status=changes.pop("status", "active"),
    )
    return _document(to_envelope(event, sequence=1, source="/t"), **changes)


def _edge_rows(history: list[Envelope]) -> dict[int, list[tuple[Any, ...]]]:
    """Rows the SQL path must hand over, or get right, by where they go in the history."""
    first = next(e for e in history if e.type == "UserRegistered")
    later = [e for e in history if e.user_id == first.user_id]
    upper = _registration(1)
    return {
        150: [_row(upper | {"subject": upper["subject"].upper()})],
        300: [_row(_registration(2, time="2026-01-01T00:00:00"))],  # no offset
        450: [_row(_registration(3, data_email="no-at-sign"))],  # the models refuse it
        600: [_row(_registration(4, type="UserTeleported"))],  # unknown type
        750: [_row(_registration(5, data_email="a@b.example\n"))],
        900: [_row(_registration(6, data_registered_at=1_700_000_000))],
        1_050: [_row(_registration(7, time="2026-06-30T23:59:60Z"))],  # a leap second
        1_200: [_row(_registration(8, data_registered_at="2026-02-30T00:00:00Z"))],
        1_350: [_row(_registration(9, time="2026-01-01T24:00:00Z"))],
        1_500: [_row(_registration(10, specversion="2.0"))],
        1_800: [_row(_registration(12, data_reason="surprise", type="PasswordChanged"))],
        # A gap: the user's sequence jumps (the column agrees, so only the order tells).
        1_950: [
            _row(
                _document(
                    to_envelope(
                        UserUpdated(user_id=first.user_id, updated_at=first.time, email=None),
                        sequence=len(later) + 5,
                        source="/t",
                    )
                )
            )
        ],
        # A registration of a user tracked long since.
        2_100: [
            _row(
                _registration(13)
                | {"subject": str(first.user_id), "sequence": len(later) + 6}
                | {"data": _registration(13)["data"] | {"user_id": str(first.user_id)}}
            )
        ],
        # The payload's sequence says otherwise than its row: the row is not believed.
        2_250: [_row(_registration(14), sequence=2)],
    }


async def seed_rows(
    database_url: str, rows: list[tuple[Any, ...]], *, stamped: bool = False
) -> None:
    """COPY outbox rows in order; `stamped`: each with the stamp its writer would give."""
    columns = [*_COLUMNS, "contract"] if stamped else _COLUMNS
    if stamped:
        rows = [(*row, stamp(row[4])) for row in rows]
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.copy_records_to_table(
            "outbox", schema_name="auth", columns=columns, records=rows
        )
    finally:
        await conn.close()


def _out_of_order(history: list[Envelope]) -> list[Envelope]:
    """The history with one user's second and third events swapped in log order."""
    counted: dict[uuid.UUID, int] = {}
    for envelope in history:
        counted[envelope.user_id] = counted.get(envelope.user_id, 0) + 1
    user = next(u for u, n in counted.items() if n >= 3)
    places = [i for i, e in enumerate(history) if e.user_id == user][1:3]
    swapped = list(history)
    swapped[places[0]], swapped[places[1]] = swapped[places[1]], swapped[places[0]]
    return swapped


async def _answer(engine: AsyncEngine, history: list[Envelope]) -> None:
    """Give the saga's answer for two of every three pending registrations, beforehand."""
    pending = [e for e in history if e.type == "UserRegistered" and e.data["status"] == "pending"]
    now = datetime.now(UTC)
    answers = [
        ProfileCreated(user_id=e.user_id, created_at=now)
        if i % 3 == 0
        else ProfileRejected(user_id=e.user_id, reason="display_name_reserved", rejected_at=now)
        for i, e in enumerate(pending)
        if i % 3 != 2
    ]
    async with engine.begin() as conn:
        await ProjectionApplier(ProfileProjection()).setup(conn)
        rows = [outbox_row(to_envelope(a, sequence=1, source=EVENT_SOURCE)) for a in answers]
        await conn.execute(outbox_table("profiles").insert().values(rows))


@pytest.mark.parametrize("stamped", [False, True], ids=["checked", "stamped"])
async def test_the_in_database_path_gives_what_the_models_give(
    engine: AsyncEngine,
    isolated_database_url: str,
    caplog: pytest.LogCaptureFixture,
    stamped: bool,
) -> None:
    history = _out_of_order(make_history(3_000, seed=12, pending_every=150))
    deleted = {e.user_id for e in history if e.type == "UserDeleted"}
    documents = [
        redact_envelope(json.loads(e.model_dump_json()))
        if e.user_id in deleted and hash(e.user_id) % 2
        else json.loads(e.model_dump_json())
        for e in history
    ]
    edges = _edge_rows(history)
    rows: list[tuple[Any, ...]] = []
    for index, document in enumerate(documents):
        rows.extend(edges.get(index, []))
        rows.append(_row(document))
    await seed_rows(isolated_database_url, rows, stamped=stamped)
    await _answer(engine, history)
    url = sqlalchemy_url(isolated_database_url)

    with caplog.at_level(logging.DEBUG, logger="consumers.replay.in_database"):
        fast = await replay(ProfileProjection(), engine, OutboxLogSource(url), batch_size=50)
    handed = [r.getMessage() for r in caplog.records if "goes through the models" in r.getMessage()]
    fast_tables = await rebuilt(engine)
    models = await replay(ModelsOnly(), engine, OutboxLogSource(url), batch_size=50)

    assert (fast.path, models.path) == ("in-database", "client")
    assert await rebuilt(engine) == fast_tables
    assert counts(fast) == counts(models)
    pages = -(-len(rows) // 50)
    assert 12 <= len(handed) < pages / 2, handed  # most pages in SQL, the odd ones not
    assert fast.handed_over == len(handed)
    reasons = " ".join(handed)
    for reason in ("SQL checks", "does not follow", "already tracked", "not answered"):
        assert reason in reasons
    assert counts(fast)[1] >= 1  # the swapped event: a duplicate by then
    assert counts(fast)[3] >= 1  # the gap


async def test_exact_times_in_other_forms_stay_in_sql(
    engine: AsyncEngine, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    times = ["2026-03-01T10:00:00.1234+05:30", "2026-03-01T10:00:00-00:00", "2026-03-01T10:00:00Z"]
    rows = [_row(_registration(30 + i, time=t, data_registered_at=t)) for i, t in enumerate(times)]
    await seed_rows(isolated_database_url, rows)
    url = sqlalchemy_url(isolated_database_url)

    with caplog.at_level(logging.DEBUG, logger="consumers.replay.in_database"):
        fast = await replay(ProfileProjection(), engine, OutboxLogSource(url))
    fast_tables = await rebuilt(engine)
    await replay(ModelsOnly(), engine, OutboxLogSource(url))

    assert (fast.path, fast.handed_over) == ("in-database", 0)
    assert not [r for r in caplog.records if "goes through the models" in r.getMessage()]
    assert await rebuilt(engine) == fast_tables
    assert len(fast_tables[0]) == 3


def edge_profile(tables: tuple[list[Any], list[Any]], number: int) -> Any:
    """The profile row of edge user `number`, if any."""
    wanted = uuid.UUID(int=0xABCDEF00 + number)
    return next((row for row in tables[0] if row[0] == wanted), None)


@pytest.fixture
async def other_database_url(isolated_database_url: str) -> AsyncIterator[str]:
    """A second, empty database on the same server: the projection's, apart from the log."""
    base, name = isolated_database_url.rsplit("/", 1)
    other = f"{name}_p"
    admin = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{other}"')
    finally:
        await admin.close()
    yield f"{base}/{other}"
    admin = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_a_log_in_another_database_takes_the_client_path(
    isolated_database_url: str, other_database_url: str
) -> None:
    history = make_history(1_500, seed=5)
    await seed_outbox(isolated_database_url, history)
    engine = create_async_engine(sqlalchemy_url(other_database_url))
    try:
        source = OutboxLogSource(sqlalchemy_url(isolated_database_url))
        outcome = await replay(ProfileProjection(), engine, source, batch_size=200)
        rows, tracked = await rebuilt(engine)
    finally:
        await engine.dispose()

    assert outcome.path == "client"
    expected_rows, expected_tracking = expected_profiles(history)
    assert [r[0] for r in rows] == sorted(expected_rows)
    assert dict(tracked) == expected_tracking


async def test_the_in_database_path_never_reads_past_a_late_commit(
    isolated_database_url: str, engine: AsyncEngine
) -> None:
    history = make_history(500, seed=3)
    await seed_outbox(isolated_database_url, history)
    early, late = (_registration(20 + i) for i in range(2))
    holder = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        writing = holder.transaction()
        await writing.start()
        # Draws the smaller id, commits last.
        await holder.copy_records_to_table(
            "outbox", schema_name="auth", columns=_COLUMNS, records=[_row(early)]
        )
        await seed_rows(isolated_database_url, [_row(late)])
        url = sqlalchemy_url(isolated_database_url)
        replaying = asyncio.create_task(
            replay(ProfileProjection(), engine, OutboxLogSource(url), batch_size=100)
        )
        await asyncio.sleep(0.5)
        await writing.commit()
        outcome = await replaying
    finally:
        await holder.close()

    tables = await rebuilt(engine)
    assert outcome.path == "in-database"
    assert edge_profile(tables, 20) is not None
    assert edge_profile(tables, 21) is not None


TIMES_TAKEN = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.5Z",
    "2026-12-31T23:59:59.999999+14:00",
    "2024-02-29T12:00:00-03:30",
    "1999-07-04T01:02:03.123+00:00",
]
TIMES_REFUSED = [
    "2026-01-01T00:00:00",  # no offset: the models read it as local time
    "2026-01-01 00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:60Z",
    "2026-02-29T00:00:00Z",  # not a leap year
    "2026-04-31T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-05:00",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T00:00:00+15:00",
    "2026-01-01T00:00:00+0100",
    "2026-0a-01T00:00:00Z",
    "2026-01-01T00:00:00Zjunk",
    "+2026-01-01T00:00:0Z",
    "",
]


async def test_the_sql_time_check_takes_only_what_python_reads_alike(
    isolated_database_url: str,
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        found = {
            t: await conn.fetchval(
                f"SELECT CASE WHEN {timestamp_ok('t')} THEN t::timestamptz END "
                "FROM (SELECT $1::text AS t) x",
                t,
            )
            for t in TIMES_TAKEN + TIMES_REFUSED
        }
    finally:
        await conn.close()
    read = TypeAdapter(datetime).validate_python
    assert {t: found[t] for t in TIMES_TAKEN} == {t: read(t) for t in TIMES_TAKEN}
    assert all(found[t] is None for t in TIMES_REFUSED), found


async def test_a_replay_with_nothing_in_the_log_swaps_in_an_empty_view(
    engine: AsyncEngine, isolated_database_url: str
) -> None:
    url = sqlalchemy_url(isolated_database_url)
    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url))
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM profiles.profiles")) == 0
    assert (outcome.path, outcome.events.applied) == ("in-database", 0)


@pytest.mark.parametrize("grant", ["", "GRANT USAGE ON SCHEMA auth TO {role}"])
async def test_a_role_that_may_not_read_the_log_takes_the_client_path(
    isolated_database_url: str, grant: str
) -> None:
    history = make_history(300, seed=9)
    await seed_outbox(isolated_database_url, history)
    role, database = f"replayer_{uuid.uuid4().hex[:8]}", isolated_database_url.rsplit("/", 1)[1]
    parts = urlsplit(isolated_database_url)
    own_url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    admin = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    await admin.execute(
        f'CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE "{database}" TO {role}'
    )
    engine = create_async_engine(sqlalchemy_url(own_url))
    try:
        # The log read as the auth database's owner, the projection written as its own role.
        source = OutboxLogSource(sqlalchemy_url(isolated_database_url))
        outcome = await replay(ProfileProjection(), engine, source, batch_size=100)
        rows, tracked = await rebuilt(engine)
    finally:
        await engine.dispose()
        await admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await admin.close()

    assert outcome.path == "client"
    expected_rows, expected_tracking = expected_profiles(history)
    assert [r[0] for r in rows] == sorted(expected_rows)
    assert dict(tracked) == expected_tracking


async def replay_failing_at_the_third_page(
    engine: AsyncEngine, url: str, monkeypatch: pytest.MonkeyPatch, *, batch_size: int
) -> None:
    """A replay whose checking connection fails on its third page (its SQL made wrong)."""
    real = staging._stage
    staged: list[int] = []

    def fails_on_the_third(log_schema: str, schema: str, table: str, stamped: bool) -> str:
        staged.append(1)
        if len(staged) < 3:
            return real(log_schema, schema, table, stamped)
        return "SELECT no_such_column"

    monkeypatch.setattr(staging, "_stage", fails_on_the_third)
    with pytest.raises(asyncpg.UndefinedColumnError):
        await replay(ProfileProjection(), engine, OutboxLogSource(url), batch_size=batch_size)
    monkeypatch.setattr(staging, "_stage", real)


async def test_a_failing_check_connection_stops_the_replay_and_resume_goes_on(
    engine: AsyncEngine, isolated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_history(1_000, seed=4)
    await seed_outbox(isolated_database_url, history)
    url = sqlalchemy_url(isolated_database_url)
    await replay_failing_at_the_third_page(engine, url, monkeypatch, batch_size=200)

    outcome = await replay(ProfileProjection(), engine, OutboxLogSource(url), resume=True)

    assert (outcome.path, outcome.resumed_at) == ("in-database", "400")
    rows, tracked = await rebuilt(engine)
    expected_rows, expected_tracking = expected_profiles(history)
    assert [r[0] for r in rows] == sorted(expected_rows)
    assert dict(tracked) == expected_tracking
