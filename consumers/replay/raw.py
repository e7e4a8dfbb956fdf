"""Events read straight from their JSON, for a replay's fast path: no pydantic models built.

Validating an envelope and its event with pydantic costs several microseconds, most of a
bulk replay's time per event. A projection that offers `BulkRows` turns these raw events
into rows itself. What is read here is checked as the contract's models would check it
(consumers/replay/checks.py for the events' data), and whatever is not sure (a form the
models accept but this does not know, or data they would refuse) raises NotBulkableError:
the batch then goes through the normal path, so the result is always the one the models
give.
"""

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from pydantic_core import from_json

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)"
# The id, the subject (canonical, as our producers write them) and the time, in one match.
_ATTRIBUTES = re.compile(f"{_UUID} {_UUID} {_TIME}", re.ASCII)


class NotBulkableError(Exception):
    """This batch must go through the normal path (the models decide)."""


@dataclass(slots=True)
class RawEvent:
    """An envelope's attributes as read from JSON; `data` is the event's data, unchecked."""

    id: str
    subject: str
    sequence: int
    type: str
    source: str
    time: str
    data: dict[str, Any]


def parse_raw(raw: str | bytes) -> RawEvent:
    """The envelope in `raw`, checked as Envelope would check it; NotBulkableError otherwise."""
    try:
        # pydantic-core's parser (Rust), with the keys' strings cached across calls.
        doc = from_json(raw, cache_strings="keys")
        event_id, subject, sequence = doc["id"], doc["subject"], doc["sequence"]
        kind, source, time, data = doc["type"], doc["source"], doc["time"], doc["data"]
    except (ValueError, KeyError, TypeError):
        raise NotBulkableError("not an envelope the fast path reads") from None
    if (
        type(event_id) is not str
        or type(subject) is not str
        or type(time) is not str
        or type(sequence) is not int
        or sequence < 1
        or type(kind) is not str
        or not kind
        or type(source) is not str
        or not source
        or type(data) is not dict
        or not _ATTRIBUTES.fullmatch(f"{event_id} {subject} {time}")
        or data.get("user_id") != subject
        or doc.get("specversion", "1.0") != "1.0"
        or doc.get("datacontenttype", "application/json") != "application/json"
    ):
        raise NotBulkableError("an envelope the fast path does not read")
    try:
        datetime.fromisoformat(time)
    except ValueError:  # well-formed, but no time (a 25th hour)
        raise NotBulkableError("an envelope the fast path does not read") from None
    return RawEvent(event_id, subject, sequence, kind, source, time, data)


class BulkRows(Protocol):
    """A projection's fast path into a replay's shadow: its rows from raw events, in bulk.

    `prepare` checks and converts one event of a handled type (it runs in a thread,
    ahead of the writes). `plan` sees a batch's due events (duplicates dropped) in order, as
    (subject, type, what `prepare` made of it), and which of their users the shadow
    already tracks (the others have no row yet). Both raise NotBulkableError for anything
    they do not handle, before anything is written. `write` then writes the plan on the
    batch's connection (COPY, multi-row statements).
    """

    handled: frozenset[str]
    """The event types the projection changes its view for (the others are only tracked)."""

    def prepare(self, event: RawEvent) -> Any:
        """The event's data checked as the models would, in the form `plan` wants."""
        ...

    def plan(self, due: Sequence[tuple[str, str, Any]], tracked: Set[str]) -> Any:
        """What to write for these events; NotBulkableError to leave them to the models."""
        ...

    async def write(self, conn: asyncpg.Connection, schema: str, plan: Any) -> None:
        """Write the plan into the projection's tables in `schema`."""
        ...
