"""Log lines as text or JSON, each with the request id and trace context it was made under."""

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from events import Envelope
from infra.observability.trace_context import current_request_id, current_trace

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds `request_id` and `traceparent` to each record, unless the caller gave them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only annotates it."""
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        if getattr(record, "traceparent", None) is None:
            trace = current_trace.get()
            record.traceparent = trace.traceparent if trace else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the context there is."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (keys with no value are left out)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "traceparent", "event_id", "event_type"):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if line.get("traceparent"):
            line["trace_id"] = str(line["traceparent"])[3:35]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def envelope_fields(envelope: Envelope) -> dict[str, Any]:
    """A log record's `extra` naming an event: its id, type and trace (a consumer's lines)."""
    return {
        "event_id": str(envelope.id),
        "event_type": envelope.type,
        "traceparent": envelope.traceparent,
    }


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Root logging of a `userbus` process: one stderr handler in the chosen format.

    The audit logger keeps its own handler (auth/security/audit.py): its lines are JSON
    already, in their own shape, and stay so in either format.
    """
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
