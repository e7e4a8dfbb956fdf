"""Errors of the consumer toolkit."""


class ConsumerError(Exception):
    """Base class of consumer toolkit errors."""


class UnknownProjectionError(ConsumerError):
    """No projection of that name is registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown projection {name!r}; known: {', '.join(sorted(known))}")
        self.name = name
