"""The outbox's stamp: the replay's checks of a payload, run once when it is written.

Checking each event of the log as its model would read it (consumers/replay/checks.py,
raw.py, and the same in SQL, sql_checks.py) is most of a replay's work, and its result
depends on nothing but the payload and the checks themselves. So the outbox's writers
(the auth service's unit of work and the profile answers, through producers/outbox.py
`outbox_row(envelope, stamp)`, and the erasure when it redacts a payload) run them once
and record the outcome in the row's `contract` column: `stamp(payload)` is
`<type>/<digest>` when the payload passes every check the in-database replay makes, else
None. The digest covers the envelope's and the type's JSON Schema and CHECKS_VERSION, so
a change of the contract or of the checks makes every older stamp stale, and those rows
are checked again in full. A row with a current stamp is taken as checked; one without
(written before the column existed, or by anything but the writer) is checked.

The checks here are the client checks plus where the SQL ones are narrower (a year outside
1000-9899 or an offset beyond 14 hours, PostgreSQL could read otherwise; a string with a
pattern that is not printable ASCII), so a stamped payload is one the SQL checks take as
well (tests/integration/test_replay_sql_checks.py proves it over every odd value).
"""

import hashlib
import json
from datetime import datetime
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from consumers.replay.checks import check_data
from consumers.replay.raw import NotBulkableError, parse_raw
from consumers.replay.sql_checks import data_ok
from events import EVENT_TYPES, Envelope

# Raise it when checks.py, raw.py or sql_checks.py come to take other payloads.
CHECKS_VERSION = 1


@cache
def contract(kind: str) -> str | None:
    """The current stamp of a payload of type `kind`; None: the type is never stamped."""
    cls = EVENT_TYPES.get(kind)
    if cls is None or data_ok(cls, "d", "dt_ok") is None:
        return None
    schemas = [CHECKS_VERSION, Envelope.model_json_schema(), cls.model_json_schema()]
    digest = hashlib.sha256(json.dumps(schemas, sort_keys=True).encode()).hexdigest()
    return f"{kind}/{digest[:16]}"


def current_stamps() -> tuple[tuple[str, str], ...]:
    """(type, its current stamp) of every type a payload of is stamped."""
    return tuple((kind, c) for kind in EVENT_TYPES if (c := contract(kind)) is not None)


def stamp(payload: str | bytes) -> str | None:
    """The stamp of the envelope JSON `payload`, or None if a check refuses it."""
    try:
        event = parse_raw(payload)
        cls = EVENT_TYPES.get(event.type)
        if cls is None or contract(event.type) is None:
            return None
        check_data(cls, event.data)
    except NotBulkableError:
        return None
    if not _time_alike(event.time):
        return None
    times, patterned = _fields(cls)
    for name in times:
        value = event.data.get(name)
        if value is not None and not _time_alike(value):
            return None
    for name in patterned:
        value = event.data.get(name)
        if isinstance(value, str) and not all("!" <= c <= "~" for c in value):
            return None
    return contract(event.type)


def _time_alike(text: str) -> bool:
    """A time (checked already) that PostgreSQL reads as Python does (sql_checks.py)."""
    return "1000" <= text[:4] <= "9899" and (text.endswith("Z") or text[-5:-3] <= "14")


@cache
def _fields(cls: type[BaseModel]) -> tuple[list[str], list[str]]:
    """The model's datetime fields, and its string fields with a pattern."""
    times, patterned = [], []
    for name, field in cls.model_fields.items():
        kinds = _kinds(field.annotation, list(field.metadata))
        if datetime in kinds:
            times.append(name)
        if "pattern" in kinds:
            patterned.append(name)
    return times, patterned


def _kinds(annotation: Any, metadata: list[Any]) -> set[Any]:
    """The types inside an annotation, and "pattern" if a string constraint has one."""
    found: set[Any] = set()
    if any(getattr(item, "pattern", None) for item in metadata):
        found.add("pattern")
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        for member in get_args(annotation):
            if member is not NoneType:
                found |= _kinds(member, [])
    elif origin is Annotated:
        base, *extra = get_args(annotation)
        found |= _kinds(base, list(extra))
    else:
        found.add(annotation)
    return found
