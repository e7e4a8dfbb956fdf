"""Events read straight from their JSON, for a replay's fast path: no pydantic models built.

Validating an envelope and its event with pydantic costs several microseconds, most of a
bulk replay's time per event. A projection that offers `BulkRows` turns these raw events
into rows itself. Everything here checks what the contract's models would check, and
whatever it is not sure of (a form the models accept but this does not know, or data they
would refuse) raises NotBulkableError: the batch then goes through the normal path, so the
result is always the one the models give.
"""

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from pydantic_core import from_json

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# RFC 3339 with an offset, the form every producer of ours writes. The models take more
# (naive times, unix numbers): those fall back to them.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII
)
# events.user.Email: the contract's cheap shape check.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_EMAIL_MAX = 320


class NotBulkableError(Exception):
    """This batch must go through the normal path (the models decide)."""


@dataclass(slots=True)
class RawEvent:
    """An envelope's attributes as read from JSON; `data` is the event's data, unvalidated."""

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
    except ValueError:
        raise NotBulkableError("not JSON") from None
    if type(doc) is not dict:
        raise NotBulkableError("not an object")
    get = doc.get
    event_id, subject, sequence = get("id"), get("subject"), get("sequence")
    kind, source, time, data = get("type"), get("source"), get("time"), get("data")
    if (
        type(event_id) is not str
        or type(subject) is not str
        or not CANONICAL_UUID.fullmatch(event_id)
        or not CANONICAL_UUID.fullmatch(subject)
        or type(sequence) is not int
        or sequence < 1
        or type(kind) is not str
        or not kind
        or type(source) is not str
        or not source
        or type(data) is not dict
        or get("specversion", "1.0") != "1.0"
        or get("datacontenttype", "application/json") != "application/json"
    ):
        raise NotBulkableError("an envelope the fast path does not read")
    timestamp(time)  # a str, once checked
    if data.get("user_id") != subject:
        raise NotBulkableError("data.user_id is not the subject in canonical form")
    return RawEvent(event_id, subject, sequence, kind, source, str(time), data)


def timestamp(value: Any) -> datetime:
    """An RFC 3339 time with an offset, as the models parse it."""
    if type(value) is not str or not _TIMESTAMP.fullmatch(value):
        raise NotBulkableError("a time the fast path does not read")
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # a well-formed string that names no time (a 61st second)
        raise NotBulkableError("a time the fast path does not read") from None


def text_field(data: dict[str, Any], key: str) -> str:
    """A required string field."""
    value = data.get(key)
    if type(value) is not str:
        raise NotBulkableError(f"{key} is not a string")
    return value


def optional_text(data: dict[str, Any], key: str) -> str | None:
    """A string field that may be null or absent."""
    value = data.get(key)
    if value is not None and type(value) is not str:
        raise NotBulkableError(f"{key} is not a string")
    return value


def email(value: Any) -> str:
    """An address of the contract's shape."""
    if type(value) is not str or len(value) > _EMAIL_MAX or not _EMAIL.fullmatch(value):
        raise NotBulkableError("an address the contract refuses")
    return value


def one_of(data: dict[str, Any], key: str, allowed: Set[str], default: str | None = None) -> str:
    """A field whose value is one of `allowed` (absent: `default`, if there is one)."""
    value = data.get(key, default)
    if value not in allowed:
        raise NotBulkableError(f"{key} is not one of {sorted(allowed)}")
    return str(value)


class BulkRows(Protocol):
    """A projection's fast path into a replay's shadow: its rows from raw events, in bulk.

    `prepare` checks and converts one event of a handled type (it runs in a worker
    thread, ahead of the writes). `plan` sees a batch's due events (duplicates dropped)
    in order, with what `prepare` made of them, and which of their users the shadow
    already tracks (the others have no row yet). Both raise NotBulkableError for anything
    they do not handle, before anything is written. `write` then writes the plan on the
    batch's connection (COPY, multi-row statements).
    """

    handled: frozenset[str]
    """The event types the projection changes its view for (the others are only tracked)."""

    def prepare(self, event: RawEvent) -> Any:
        """The event's data checked as the models would, in the form `plan` wants."""
        ...

    def plan(self, due: Sequence[tuple[RawEvent, Any]], tracked: Set[str]) -> Any:
        """What to write for these events; NotBulkableError to leave them to the models."""
        ...

    async def write(self, conn: asyncpg.Connection, schema: str, plan: Any) -> None:
        """Write the plan into the projection's tables in `schema`."""
        ...
