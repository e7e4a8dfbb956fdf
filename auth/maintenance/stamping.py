"""`userbus events stamp`: the replay's stamp on outbox rows that lack a current one.

Rows written before migration 0009, or under an older contract or older checks, carry no
current stamp, and the in-database replay checks each of them in full (about half its speed,
bench/README.md). This stamps them once, as the writer would (consumers/replay/stamp.py):
in batches by id, each row locked while its batch runs, so that an erasure redacting the
same rows waits and stamps its own payloads after. A payload the checks refuse is left
unstamped: the replay keeps checking it, and hands it to the models. Idempotent: a run
after another finds nothing to do.
"""

from dataclasses import dataclass

import asyncpg

from consumers.replay.stamp import current_stamps, stamp
from infra.settings import asyncpg_dsn

BATCH = 5_000
_PAGE = """
    SELECT id, payload::text AS payload, contract FROM auth.outbox
    WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE
"""
_STAMP = """
    UPDATE auth.outbox o SET contract = v.contract
    FROM unnest($1::bigint[], $2::text[]) AS v(id, contract) WHERE o.id = v.id
"""


@dataclass(frozen=True)
class Stamping:
    """What a run did: rows stamped now, already current, and refused by the checks."""

    stamped: int
    current: int
    refused: int


async def stamp_log(database_url: str, *, batch: int = BATCH) -> Stamping:
    """Stamp every row of auth.outbox whose stamp is not its payload's current one."""
    currents = {given for _, given in current_stamps()}
    stamped = current = refused = 0
    after = 0
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        while True:
            async with conn.transaction():
                rows = await conn.fetch(_PAGE, after, batch)
                if not rows:
                    return Stamping(stamped, current, refused)
                changed: list[tuple[int, str]] = []
                for row in rows:
                    if row["contract"] in currents:
                        current += 1
                    elif (given := stamp(row["payload"])) is None:
                        refused += 1
                    else:
                        changed.append((row["id"], given))
                if changed:
                    await conn.execute(_STAMP, [i for i, _ in changed], [g for _, g in changed])
                stamped += len(changed)
            after = rows[-1]["id"]
    finally:
        await conn.close()
