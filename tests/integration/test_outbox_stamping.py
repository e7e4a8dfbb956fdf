"""`userbus events stamp` gives older outbox rows the writer's stamp, once, and only where due."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from typer.testing import CliRunner

from auth.maintenance.stamping import stamp_log
from consumers.replay.stamp import contract, stamp
from infra.settings import asyncpg_dsn
from tests.integration.history import make_history, seed_outbox
from userbus.cli import app

pytestmark = pytest.mark.integration


async def _stamps(database_url: str) -> list[tuple[str, str | None]]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT payload::text, contract FROM auth.outbox ORDER BY id")
    finally:
        await conn.close()
    return [(row["payload"], row["contract"]) for row in rows]


async def test_older_rows_are_stamped_once_and_refused_payloads_left_to_the_checks(
    isolated_database_url: str,
) -> None:
    history = make_history(300, seed=31)
    await seed_outbox(isolated_database_url, history)  # no stamps, as before 0009
    odd = json.loads(history[0].model_dump_json())
    odd |= {"id": str(uuid.uuid4()), "subject": str(uuid.uuid4()), "data": odd["data"] | {}}
    odd["data"] |= {"user_id": odd["subject"], "email": "no-at-sign"}
    conn = await asyncpg.connect(asyncpg_dsn(isolated_database_url))
    try:
        await conn.execute(
            "INSERT INTO auth.outbox (event_id, subject, sequence, type, payload, occurred_at, "
            "contract) VALUES ($1, $2, 1, $3, $4, $5, 'UserRegistered/stale')",
            uuid.UUID(odd["id"]), uuid.UUID(odd["subject"]), odd["type"], json.dumps(odd),
            datetime.now(UTC),
        )  # fmt: skip
    finally:
        await conn.close()

    first = await stamp_log(isolated_database_url, batch=64)
    again = await stamp_log(isolated_database_url, batch=64)

    assert (first.stamped, first.current, first.refused) == (len(history), 0, 1)
    assert (again.stamped, again.current, again.refused) == (0, len(history), 1)
    rows = await _stamps(isolated_database_url)
    assert all(given == stamp(payload) for payload, given in rows[:-1])
    assert {given for _, given in rows[:-1]} <= {contract(e.type) for e in history}
    assert rows[-1][1] == "UserRegistered/stale"  # refused: left as it was, checked each time


async def test_the_command_says_what_it_stamped(isolated_database_url: str) -> None:
    await seed_outbox(isolated_database_url, make_history(40, seed=32))
    env = {"USERBUS_DATABASE_URL": isolated_database_url}

    result = await asyncio.to_thread(CliRunner().invoke, app, ["events", "stamp"], env=env)

    assert result.exit_code == 0, result.output
    assert "stamped 40 events; 0 already stamped; 0 the checks refuse" in result.output
