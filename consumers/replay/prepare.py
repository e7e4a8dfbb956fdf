"""Preparing a page for the shadow, without the database: raw for the fast path, or decoded.

The fast path (a projection's BulkRows) reads the events' JSON without building models and
checks it as they would; a page it refuses is decoded with the models instead. This is
most of a replay's CPU work, so it runs in a thread, beside the writes of the page before.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consumers.applier import Decoded, decode
from consumers.projection import Projection
from consumers.replay.checks import check_data
from consumers.replay.raw import BulkRows, NotBulkableError, parse_raw
from consumers.replay.sources import SourcePage
from events import EVENT_TYPES, Envelope, MalformedEventError, envelope_from_json

logger = logging.getLogger("consumers.replay.bulk")


# What a prepared page holds for an event of a type the projection does not handle.
ONLY_TRACKED = object()
Due = tuple[str, int, str, Any]
"""An event ready for BulkRows: subject, sequence, type, and what `prepare` made of it."""


@dataclass(frozen=True, slots=True)
class PreparedPage:
    """A page ready to write: its events for the fast path, or decoded envelopes."""

    page: SourcePage
    raw: list[Due] | None
    decoded: list[Decoded] | None


def prepare_raw(
    raw: Sequence[str | bytes], handles: frozenset[str], bulk: BulkRows
) -> list[Due] | str:
    """The page's events for the fast path, or why it must go through the models."""
    prepared: list[Due] = []
    try:
        for text in raw:
            event = parse_raw(text)
            cls = EVENT_TYPES.get(event.type)
            if cls is None:
                raise NotBulkableError(f"unknown type {event.type}")
            if event.type in handles:
                if event.type not in bulk.handled:
                    raise NotBulkableError(f"{event.type} has no fast path")
                made = bulk.prepare(event)
            else:
                # Only tracked, but the applier would refuse it if it were malformed.
                check_data(cls, event.data)
                made = ONLY_TRACKED
            prepared.append((event.subject, event.sequence, event.type, made))
    except NotBulkableError as exc:
        return str(exc)
    return prepared


def handled_types(projection: Projection) -> frozenset[str]:
    """The type names the projection handles."""
    return frozenset(cls.type_name() for cls in projection.handles)


def prepare_page(page: SourcePage, projection: Projection) -> PreparedPage:
    """Prepare a page here and now (in the calling thread)."""
    bulk = projection.bulk_rows()
    if bulk is not None and page.parsed is None:
        prepared = prepare_raw(page.raw, handled_types(projection), bulk)
        if not isinstance(prepared, str):
            return PreparedPage(page, prepared, None)
        logger.debug("%s: a page goes through the models: %s", projection.name, prepared)
    return decoded_page(page)


def decoded_page(page: SourcePage) -> PreparedPage:
    """The page decoded with the models, for the applier."""
    return PreparedPage(page, None, [decode(e) for e in envelopes(page)])


def envelopes(page: SourcePage) -> list[Envelope]:
    """The page's envelopes; entries that are none are logged and left out."""
    if page.parsed is not None:
        return list(page.parsed)
    found = []
    for raw in page.raw:
        try:
            found.append(envelope_from_json(raw))
        except MalformedEventError as exc:
            # As a consumer would dead-letter it: the history is read past it.
            logger.warning("replay: skipping an entry that is not an envelope: %s", exc)
    return found
