"""Dead letters: messages a consumer gave up on, kept with their error for a person to look at.

They go to `<stream>.dlq` (a Redis Stream or a Kafka topic beside the events), with the
original body, the error, the consumer group and where the message came from.
`userbus dlq list` shows them; `userbus dlq retry` puts them back on the stream, where
every group receives them again (and those that had applied them absorb the duplicate).
"""

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class DeadLetter:
    """A message given up on: its body as received, and why."""

    payload: bytes
    error: str
    group: str
    origin: str = ""
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Where the dead letter itself sits (a stream entry id or partition@offset), once read.
    letter_id: str = ""


class DeadLetterQueue(Protocol):
    """Where dead letters go, and how they are read back and retried."""

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store the letters."""
        ...

    def read(self) -> AsyncIterator[DeadLetter]:
        """Every stored letter, oldest first."""
        ...

    async def retry(self, letter_ids: Sequence[str] | None = None) -> int:
        """Put the letters (all, or those named) back on the stream; how many."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


def body_bytes(body: Any) -> bytes:
    """A decoded message body as bytes again (for a dead letter)."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def letter_fields(letter: DeadLetter) -> dict[str, str]:
    """The attributes a broker stores beside a letter's body, as text."""
    return {
        "error": letter.error,
        "group": letter.group,
        "origin": letter.origin,
        "failed_at": letter.failed_at.isoformat(),
    }


def stored_letter(payload: bytes, attributes: Mapping[str, str], letter_id: str) -> DeadLetter:
    """A letter read back: its body, its attributes (see `letter_fields`), where it sits."""
    failed_at = attributes.get("failed_at") or datetime.now(UTC).isoformat()
    return DeadLetter(
        payload=payload,
        error=attributes.get("error", ""),
        group=attributes.get("group", ""),
        origin=attributes.get("origin", ""),
        failed_at=datetime.fromisoformat(failed_at),
        letter_id=letter_id,
    )
