"""Security events as structured JSON lines: who did what, from where, and why it failed.

Never pass a password, hash or token here: the record is written as given.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

AUDIT_LOGGER = "userbus.audit"


class AuditLog:
    """Writes one JSON object per security event to the `userbus.audit` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def record(self, event: str, **fields: Any) -> None:
        """Log `event` (e.g. "login_failed") with its fields, as one JSON line."""
        line = {"ts": datetime.now(UTC).isoformat(), "event": event, **fields}
        level = logging.WARNING if event in _ALARMING else logging.INFO
        self._logger.log(level, json.dumps(line, default=str, sort_keys=False))


# Events an operator should notice without reading every login.
_ALARMING = frozenset({"login_locked", "refresh_token_reused"})


class JsonLineFormatter(logging.Formatter):
    """Leaves audit lines as the JSON they already are (no prefix to strip before parsing)."""

    def format(self, record: logging.LogRecord) -> str:
        """The message itself."""
        return record.getMessage()
