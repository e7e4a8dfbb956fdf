"""Names of the streams and topics the events travel on."""

DEFAULT_STREAM = "userbus.users"
# The profile service's answers to pending registrations (ProfileCreated, ProfileRejected).
# Their own stream: the per-user sequences on the users stream are the auth service's.
PROFILE_STREAM = "userbus.profiles"


def dead_letter_stream(stream: str) -> str:
    """The dead-letter stream or topic that belongs to `stream`."""
    return f"{stream}.dlq"
