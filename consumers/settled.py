"""What a consumer tells about the events it settled: a DEBUG line each, and spans if on."""

import logging
import time
from collections.abc import Sequence

from events import Envelope
from infra.observability.logs import envelope_fields
from infra.observability.otel import EventSpans

logger = logging.getLogger("consumers.consumer")


class SettledEvents:
    """A consumer group's record of settled events, with their trace context."""

    def __init__(self, group: str, spans: EventSpans | None = None) -> None:
        self.group = group
        self.spans = spans

    @classmethod
    def of(cls, group: str, *, otel: bool) -> "SettledEvents":
        """The group's record, with OpenTelemetry spans when `otel` is on."""
        return cls(group, EventSpans(group) if otel else None)

    @staticmethod
    def now() -> int:
        """The time a batch begins to settle, as spans take it."""
        return time.time_ns()

    def record(self, envelopes: Sequence[Envelope], started_ns: int) -> None:
        """Log each event at DEBUG (only when enabled: one line per event) and span it."""
        if logger.isEnabledFor(logging.DEBUG):
            for envelope in envelopes:
                fields = envelope_fields(envelope)
                logger.debug("%s: settled %s", self.group, envelope.type, extra=fields)
        if self.spans is not None:
            self.spans.settled(self.group, envelopes, started_ns)

    def close(self) -> None:
        """Flush the spans, if any."""
        if self.spans is not None:
            self.spans.close()
