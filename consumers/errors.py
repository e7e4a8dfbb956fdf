"""Errors of the consumer toolkit."""


class ConsumerError(Exception):
    """Base class of consumer toolkit errors."""


class UnknownProjectionError(ConsumerError):
    """No projection of that name is registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown projection {name!r}; known: {', '.join(sorted(known))}")
        self.name = name


class ConsumerFailedError(ConsumerError):
    """A consumer's reader or applier stopped on an error it could not retry (a bug).

    The process should exit: nothing after the failed batch is acknowledged, so a restart
    (by the orchestrator) takes up from there.
    """

    def __init__(self, group: str) -> None:
        super().__init__(f"consumer {group!r} stopped on an unexpected error")
        self.group = group
