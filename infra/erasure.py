"""Erasure on a broker: what a stream or topic still holds of deleted users, replaced.

The auth service redacts a deleted user's events in its log first (auth/maintenance/); then
the broker's copy goes (`Broker.erase`). A Redis Stream's entries can be deleted (XDEL), so
they are replaced by the redacted events; a Kafka record cannot be changed or deleted one by
one, so a topic loses them only when its retention drops them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

RedactedHistories = Mapping[UUID, Sequence[str]]
"""Per deleted user, the redacted envelopes (JSON text) of all their events, in sequence order."""


@dataclass(frozen=True, slots=True)
class ErasedEntries:
    """What one erasure did to a stream or topic."""

    # Entries looked at (Redis: from the scan's start to the stream's end).
    scanned: int = 0
    # Entries that carried a deleted user's unredacted event, deleted.
    removed: int = 0
    # Redacted events appended in their place (so a group that had not read them yet still
    # learns of the deletion).
    appended: int = 0
    # Dead letters about these users, deleted.
    dead_letters_removed: int = 0
    # False when the broker cannot delete records (Kafka): they leave with its retention.
    rewritable: bool = True
