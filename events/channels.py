"""Names of the streams and topics the events travel on."""

DEFAULT_STREAM = "userbus.users"


def dead_letter_stream(stream: str) -> str:
    """The dead-letter stream or topic that belongs to `stream`."""
    return f"{stream}.dlq"
