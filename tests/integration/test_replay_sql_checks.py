"""The in-database replay's SQL checks never take what the models, or the client checks, refuse."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from consumers.replay.checks import check_data
from consumers.replay.raw import NotBulkableError, parse_raw
from consumers.replay.sql_checks import checked_events, data_ok
from consumers.replay.stamp import contract, current_stamps, stamp
from events import EVENT_TYPES, Envelope, to_envelope
from infra.settings import asyncpg_dsn
from producers.outbox import outbox_row
from tests.integration.test_replay_in_database import TIMES_REFUSED, TIMES_TAKEN
from tests.unit.test_replay_checks import FIELDS, ODD_VALUES, models_read, valid_data

pytestmark = pytest.mark.integration


def _envelope(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    event = EVENT_TYPES[kind].model_validate(valid_data(kind))
    document: dict[str, Any] = json.loads(
        to_envelope(event, sequence=1, source="/s").model_dump_json()
    )
    return document | {"data": data | {"user_id": document["subject"]}}


def _client_reads(document: dict[str, Any]) -> bool:
    try:
        check_data(EVENT_TYPES[document["type"]], parse_raw(json.dumps(document)).data)
    except NotBulkableError:
        return False
    return True


def _cases() -> list[tuple[str, str, Any, dict[str, Any]]]:
    cases = []
    for kind in sorted(FIELDS):
        cases.append((kind, "", None, _envelope(kind, valid_data(kind))))
        for field in FIELDS[kind]:
            for value in [*ODD_VALUES, "<absent>"]:
                data = valid_data(kind)
                if value == "<absent>":
                    data.pop(field, None)
                else:
                    data[field] = value
                cases.append((kind, field, value, _envelope(kind, data)))
    return cases


async def _sql_reads(database_url: str, documents: list[dict[str, Any]]) -> list[bool]:
    """`ok` of each envelope, written to the outbox of `database_url` and read back."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        first = await conn.fetchval("SELECT coalesce(max(id), 0) FROM auth.outbox")
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "outbox",
            schema_name="auth",
            columns=["event_id", "subject", "sequence", "type", "payload", "occurred_at"],
            records=[
                (uuid.UUID(d["id"]), uuid.UUID(d["subject"]), 1, d["type"], json.dumps(d), now)
                for d in documents
            ],
        )
        rows = await conn.fetch(
            f"SELECT ok FROM ({checked_events('auth')}) c ORDER BY id", first, first + 10**9
        )
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def test_no_odd_value_passes_the_sql_checks_that_the_models_refuse(
    isolated_database_url: str,
) -> None:
    cases = _cases()
    # Each case is the first event of a subject of its own, its payload's subject the row's.
    documents = []
    for _, _, _, document in cases:
        subject = str(uuid.uuid4())
        documents.append(
            document | {"subject": subject, "data": document["data"] | {"user_id": subject}}
        )
    found = await _sql_reads(isolated_database_url, documents)

    taken = 0
    for (kind, field, value, _), document, ok in zip(cases, documents, found, strict=True):
        if not field:
            assert ok, f"{kind} as our producers write it goes through the models"
        if ok:
            taken += 1
            assert models_read(kind, document["data"]), (kind, field, value)
            assert _client_reads(document), (kind, field, value)
            Envelope.model_validate(document)
    assert taken > len(FIELDS) * 10


def test_a_model_with_a_field_sql_does_not_check_is_left_to_the_models() -> None:
    from pydantic import BaseModel

    class Odd(BaseModel):
        count: int

    assert data_ok(Odd, "d", "dt") is None


MORE_TIMES = [
    *TIMES_TAKEN,
    *TIMES_REFUSED,
    "0999-01-01T00:00:00+05:00",  # PostgreSQL and Python part ways below year 1000
    "0999-12-31T23:00:00Z",
    "9900-01-01T00:00:00Z",
    "2026-01-01T00:00:00+14:59",
    "2026-01-01T00:00:00-23:00",
]
ODD_EMAILS = ["é@b.example", "a\u00a0b@c.example", "ann@exämple.com", "a@b.example"]


def _stamp_cases() -> list[dict[str, Any]]:
    documents = [document for *_, document in _cases()]
    for t in MORE_TIMES:
        documents.append(
            _envelope("PasswordChanged", valid_data("PasswordChanged") | {"changed_at": t})
        )
        documents.append(_envelope("PasswordChanged", valid_data("PasswordChanged")) | {"time": t})
    for email in ODD_EMAILS:
        documents.append(
            _envelope("UserRegistered", valid_data("UserRegistered") | {"email": email})
        )
    return documents


async def test_a_payload_the_writer_stamps_is_one_the_sql_checks_take(
    isolated_database_url: str,
) -> None:
    documents = []
    for document in _stamp_cases():
        subject = str(uuid.uuid4())
        documents.append(
            document | {"subject": subject, "data": document["data"] | {"user_id": subject}}
        )
    found = await _sql_reads(isolated_database_url, documents)

    stamped = 0
    for document, ok in zip(documents, found, strict=True):
        given = stamp(json.dumps(document))
        if given is not None:
            stamped += 1
            assert ok, document
            assert given == contract(document["type"])
    assert stamped > len(FIELDS) * 10
    assert stamped < len(documents) - len(TIMES_REFUSED)


async def test_a_current_stamp_stands_for_the_checks_and_anything_else_is_checked(
    isolated_database_url: str,
) -> None:
    good = _envelope("UserRegistered", valid_data("UserRegistered"))
    bad = _envelope("UserRegistered", valid_data("UserRegistered") | {"email": "no-at-sign"})
    current = contract("UserRegistered")
    cases = [
        (good, current, 1, True),
        # The stamp is the writer's word: a row stamped by other hands is not checked again.
        (bad, current, 1, True),
        (bad, "UserRegistered/0000000000000000", 1, False),  # stale: checked
        (bad, None, 1, False),
        (good, None, 1, True),
        (good, contract("PasswordChanged"), 1, True),  # another type's stamp: checked, fine
        (bad, contract("PasswordChanged"), 1, False),
        (good, current, 2, False),  # the row's sequence is not the payload's
    ]
    conn = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        first = await conn.fetchval("SELECT coalesce(max(id), 0) FROM auth.outbox")
        records = []
        for document, given, sequence, _ in cases:
            subject = uuid.uuid4()
            data = document["data"] | {"user_id": str(subject)}
            document = document | {"subject": str(subject), "id": str(uuid.uuid4()), "data": data}
            records.append((
                uuid.UUID(document["id"]), subject, sequence, document["type"],
                json.dumps(document), datetime.now(UTC), given,
            ))  # fmt: skip
        await conn.copy_records_to_table(
            "outbox",
            schema_name="auth",
            columns=[
                "event_id",
                "subject",
                "sequence",
                "type",
                "payload",
                "occurred_at",
                "contract",
            ],
            records=records,
        )
        rows = await conn.fetch(
            f"SELECT ok FROM ({checked_events('auth', current_stamps())}) c ORDER BY id",
            first,
            first + 10**9,
        )
    finally:
        await conn.close()
    assert [row[0] for row in rows] == [ok for *_, ok in cases]


def test_the_writer_stamps_what_the_checks_take_and_the_stamp_names_the_checks() -> None:
    event = EVENT_TYPES["UserRegistered"].model_validate(valid_data("UserRegistered"))
    row = outbox_row(to_envelope(event, sequence=1, source="/s"), stamp)
    assert row["contract"] == contract("UserRegistered")
    assert outbox_row(to_envelope(event, sequence=1, source="/s"))["contract"] is None
    assert contract("UserRegistered") != contract("UserUpdated")
    assert contract("NoSuchType") is None
    odd = _envelope("UserRegistered", valid_data("UserRegistered") | {"email": "é@b.example"})
    assert stamp(json.dumps(odd)) is None
    assert stamp("not json") is None
