"""Which failures a consumer retries in place, and which are the event's fault."""

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """Whether an error says the database is away rather than that the batch is bad.

    Transient errors are retried in place, for as long as it takes, so that nothing behind
    them is applied first and per-user order holds. Anything else (a constraint the event
    breaks, a bug in a handler) is the event's fault: it gets a few attempts, then the
    dead-letter stream.
    """
    if isinstance(exc, OSError | ConnectionError | OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    # Refused or lost connections (database restarting, out of slots) and conflicts that a
    # retry resolves, by SQLSTATE: 08 connection, 53 resources, 57P operator intervention,
    # 40001 serialization failure, 40P01 deadlock.
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return exc.connection_invalidated or sqlstate.startswith(_TRANSIENT_SQLSTATES)


_TRANSIENT_SQLSTATES = ("08", "53", "57P", "40001", "40P01")
