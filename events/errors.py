"""Errors raised when an event cannot be read."""


class EventError(Exception):
    """Base class of event contract errors."""


class UnknownEventTypeError(EventError):
    """The envelope names an event type this version of the contract does not know."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"unknown event type {type_name!r}")
        self.type_name = type_name


class MalformedEventError(EventError):
    """The bytes are not a valid envelope, or the data does not fit its event type."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed event: {reason}")
        self.reason = reason
