"""A stream's or topic's status: its length, how far behind each group is, its dead letters."""

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupLag:
    """One consumer group: messages not yet delivered to it, and delivered but unconfirmed."""

    group: str
    behind: int | None
    unacknowledged: int


@dataclass(frozen=True)
class StreamStatus:
    """The stream or topic, its groups, and its dead letters."""

    stream: str
    length: int
    groups: list[GroupLag]
    dead_letters: int
