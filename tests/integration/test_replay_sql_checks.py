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
from events import EVENT_TYPES, Envelope, to_envelope
from infra.settings import asyncpg_dsn
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
