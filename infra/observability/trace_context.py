"""W3C trace context (`traceparent`, `tracestate`) and the request id, carried in contextvars.

The API's middleware sets both for each request; a consumer sets the trace context of the
event it applies (`following`), so what it writes in answer joins the same trace. The unit of
work copies the trace context into the events it writes (the CloudEvents distributed-tracing
extension), and log records read both from here.
"""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from events.tracing import valid_traceparent, valid_tracestate

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A checked `traceparent` and the `tracestate` that came with it."""

    traceparent: str
    tracestate: str | None = None

    @property
    def trace_id(self) -> str:
        """The 32 hex digits naming the whole trace."""
        return self.traceparent[3:35]


def trace_context(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The trace context of these header values; none without a valid traceparent."""
    parent = valid_traceparent(traceparent)
    if parent is None:
        return None
    return TraceContext(parent, valid_tracestate(tracestate))


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID if it is well-formed (no spaces or controls), else a new one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    # 128 random bits, as a UUID4's hex has, at a fraction of uuid4()'s cost per request.
    return os.urandom(16).hex()


# Module-level by necessity: a ContextVar is a key, its values live in each task's context, so
# concurrent requests (and tests) never see each other's.
current_trace: ContextVar[TraceContext | None] = ContextVar("userbus_trace", default=None)
"""The trace context of the request (or event) being handled."""

current_request_id: ContextVar[str | None] = ContextVar("userbus_request_id", default=None)
"""The id of the API request being handled."""


@contextmanager
def following(traceparent: str | None, tracestate: str | None = None) -> Iterator[None]:
    """Handle what follows within this trace context (an event's `traceparent`), if valid."""
    token = current_trace.set(trace_context(traceparent, tracestate))
    try:
        yield
    finally:
        current_trace.reset(token)
