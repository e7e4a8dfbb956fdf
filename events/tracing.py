"""The W3C trace context an event may carry (CloudEvents distributed-tracing extension).

An event caused by an HTTP request carries that request's `traceparent` (and `tracestate`),
so a consumer's log lines and spans join the request's trace. The values are checked here,
where the contract is: a malformed one is dropped, never made a reason to refuse an event.
"""

import re

# version 00: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"; later versions may
# append fields after the flags (W3C Trace Context, 3.2.4), which a version-00 reader keeps.
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# list-members of key=value, at most 512 characters in all (W3C Trace Context, 3.3).
TRACESTATE_PATTERN = r"^[\x20-\x7e]{1,512}$"
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")


def valid_traceparent(value: object) -> str | None:
    """`value` if it is a well-formed traceparent (lower-cased), else None."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t").lower())
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    # All-zero ids are invalid and version ff is forbidden; a version-00 value has no tail.
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    if version == "00" and rest:
        return None
    return match.group(0)


def valid_tracestate(value: object) -> str | None:
    """`value` if it can be a tracestate (printable ASCII, 512 characters at most), else None."""
    if not isinstance(value, str) or not _TRACESTATE.fullmatch(value.strip(" \t")):
        return None
    return value.strip(" \t")
