"""The checks of consumers/replay/checks.py and raw.py as SQL, for the in-database replay.

`checked_events(log_schema)` selects the log's events in a position range with `ok`: true
only for an envelope parse_raw (raw.py) reads whose data its model reads as it is
(checks.py). It is narrower where SQL and Python could disagree (a time PostgreSQL would
read otherwise, a pattern whose regular expression could mean something else in SQL):
what it refuses goes through the models anyway. The envelope's id, subject and sequence
must equal the outbox row's typed columns, which proves their form with one comparison
each (regular expressions cost PostgreSQL microseconds an event). Nothing here raises:
a cast only runs once its text is proved to fit, so a malformed row makes `ok` false
instead of failing the statement. A row the outbox's writer stamped as passing these checks
(consumers/replay/stamp.py) is taken without them when its stamp is still the current one.
"""

import dataclasses
import re
from datetime import datetime
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from consumers.replay.checks import _checks
from events import EVENT_TYPES

# A pattern is used in SQL only if made of these parts (no ranges, no groups), and then
# only on printable ASCII without spaces, where Python and PostgreSQL read them alike.
_SAFE_PATTERN = re.compile(r"\^(?:[A-Za-z0-9@_.+*?]|\\[s.@+]|\[\^?(?:[A-Za-z0-9@_.]|\\s)+\])*\$")
_PRINTABLE = "'^[!-~]*$'"


def quote(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _c(text: str) -> str:
    # Byte order: digits compare as digits, and faster than the database's collation.
    return f'{text} COLLATE "C"'


def _among(values: list[str]) -> str:
    return ", ".join(quote(v) for v in values)


@cache
def _parts() -> dict[str, str]:
    """The IN lists of timestamp_ok: each piece of a time with its separator, as taken."""
    days = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
    return {
        "century": _among([f"{c}" for c in range(10, 99)]),  # years 1000-9899
        "year": _among([f"{y:02}-" for y in range(100)]),
        "month_day": _among(
            [f"{m:02}-{d:02}T" for m in range(1, 13) for d in range(1, days.get(m, 31) + 1)]
        ),
        "hour_minute": _among([f"{h:02}:{m:02}:" for h in range(24) for m in range(60)]),
        "second": _among([f"{s:02}" for s in range(60)]),
        "offset": _among(
            [f"{sign}{h:02}:{m:02}" for sign in "+-" for h in range(15) for m in range(60)]
        ),
    }


def timestamp_ok(t: str) -> str:
    """SQL: the text `t` is RFC 3339 with Z or an offset, each part in its range.

    PostgreSQL would read a 24th hour, a 60th second or a year 0 otherwise than Python, so
    those are refused; years 1000-9899 leave room for any offset. No regular expression and
    few function calls (each costs PostgreSQL a fraction of a microsecond an event, a
    regular expression or a `translate` more than a microsecond): each piece of the time,
    with its separator, is looked up in the list of those taken (a hashed IN list), the
    fraction's digits are trimmed. `t` should be a column (it is read many times).
    """
    parts = _parts()
    zone = f"CASE WHEN right({t}, 1) = 'Z' THEN 1 ELSE 6 END"
    fraction = f"substr({t}, 20, length({t}) - 19 - {zone})"
    year = f"left({t}, 4)::int"
    leap = f"({year} % 4 = 0 AND ({year} % 100 <> 0 OR {year} % 400 = 0))"
    pieces = (
        f"left({t}, 2) IN ({parts['century']}) AND substr({t}, 3, 3) IN ({parts['year']}) "
        f"AND substr({t}, 6, 6) IN ({parts['month_day']}) "
        f"AND substr({t}, 12, 6) IN ({parts['hour_minute']}) "
        f"AND substr({t}, 18, 2) IN ({parts['second']}) "
        f"AND (right({t}, 1) = 'Z' OR right({t}, 6) IN ({parts['offset']})) "
        f"AND ({fraction} = '' OR (length({fraction}) BETWEEN 2 AND 7 "
        f"AND rtrim({fraction}, '0123456789') = '.'))"
    )
    # Nested: the lengths the pieces are cut at must be there, and the year digits before
    # the leap year is computed (AND does not promise an order).
    return (
        f"(CASE WHEN length({t}) BETWEEN 20 AND 32 THEN CASE WHEN {pieces} "
        f"THEN substr({t}, 6, 6) <> '02-29T' OR {leap} ELSE false END ELSE false END)"
    )


def _text(v: str) -> str:
    return f"({v} #>> '{{}}')"


def _string(v: str) -> str:
    return f"jsonb_typeof({v}) = 'string'"


def _value_check(annotation: Any, metadata: list[Any], v: str) -> str | None:
    """SQL true when the jsonb `v` (present) fits the annotation; None: not done in SQL."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) != 1 or len(get_args(annotation)) != 2:
            return None
        inner = _value_check(members[0], metadata, v)
        return None if inner is None else f"(jsonb_typeof({v}) = 'null' OR {inner})"
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _value_check(base, [*metadata, *extra], v)
    if origin is Literal:
        allowed = get_args(annotation)
        if not all(type(a) is str for a in allowed) or metadata:
            return None
        return f"({_string(v)} AND {_text(v)} IN ({', '.join(quote(a) for a in allowed)}))"
    if annotation is str:
        return _string_check(metadata, v)
    if metadata:
        return None
    if annotation is bool:
        # JSON true/false only: the models also take "true", 1 and the like, which are
        # left to them (SQL may take less than the models, never more).
        return f"jsonb_typeof({v}) = 'boolean'"
    if annotation is datetime:
        return f"({_string(v)} AND {timestamp_ok(_text(v))})"
    return None  # a UUID other than user_id, a number, ...: left to the models


def _string_check(metadata: list[Any], v: str) -> str | None:
    """As checks.py's: only `pattern` and `max_length` constraints are known."""
    parts = [_string(v)]
    for item in metadata:
        if isinstance(item, FieldInfo) or not dataclasses.is_dataclass(item):
            return None
        values = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
        values = {k: v for k, v in values.items() if v is not None}
        if not set(values) <= {"pattern", "max_length"}:
            return None
        if "pattern" in values:
            if not _SAFE_PATTERN.fullmatch(values["pattern"]):
                return None
            parts += [f"{_text(v)} ~ {_PRINTABLE}", f"{_text(v)} ~ {quote(values['pattern'])}"]
        if "max_length" in values:
            parts.append(f"length({_text(v)}) <= {int(values['max_length'])}")
    return "(" + " AND ".join(parts) + ")"


def first_time_field(cls: type[BaseModel]) -> str | None:
    """The model's first datetime field: staged as text once, its check reads that."""
    return next((n for n, f in cls.model_fields.items() if f.annotation is datetime), None)


def data_ok(cls: type[BaseModel], d: str, dt_ok: str) -> str | None:
    """SQL true when the jsonb object `d` is data `cls` reads as it is; None: not in SQL.

    `user_id` is proved by the envelope's check (it equals the subject); `dt_ok` is
    timestamp_ok of the text of the first datetime field (`first_time_field`), computed
    once for every type.
    """
    if _checks(cls) is None:  # checks.py leaves this model to pydantic: so does SQL
        return None
    parts = [f"jsonb_typeof({d}) = 'object'"]
    first = first_time_field(cls)
    for name, field in cls.model_fields.items():
        if name == "user_id":
            continue
        v = f"({d} -> {quote(name)})"
        if name == first:
            check: str | None = f"({_string(v)} AND {dt_ok})"
        else:
            check = _value_check(field.annotation, list(field.metadata), v)
        if check is None:
            return None
        has = f"({d} ? {quote(name)})"
        parts.append(f"({has} AND {check})" if field.is_required() else f"(NOT {has} OR {check})")
    return "(" + " AND ".join(parts) + ")"


def envelope_ok() -> str:
    """SQL over the staged columns: the envelope is one parse_raw reads, as the row says."""
    return " AND ".join([
        "jsonb_typeof(p) = 'object'",
        "(p ->> 'id') = event_id::text",
        "(p ->> 'subject') = subject::text",
        "jsonb_typeof(p -> 'sequence') = 'number' AND (p ->> 'sequence') = sequence::text",
        "jsonb_typeof(p -> 'source') = 'string' AND (p ->> 'source') <> ''",
        "jsonb_typeof(p -> 'time') = 'string' AND t_ok",
        "jsonb_typeof(d) = 'object' AND (d ->> 'user_id') = subject::text",
        "(NOT p ? 'specversion' OR p -> 'specversion' = '\"1.0\"')",
        "(NOT p ? 'datacontenttype' OR p -> 'datacontenttype' = '\"application/json\"')",
    ])  # fmt: skip


def _trusted(stamps: tuple[tuple[str, str], ...]) -> str:
    """SQL: the row's stamp is the current one of its type (consumers/replay/stamp.py).

    Its subject and sequence are still compared with the payload's: the build reads them
    from the row's columns, the stamp was taken of the payload.
    """
    cases = " ".join(f"WHEN {quote(kind)} THEN {quote(stamp)}" for kind, stamp in stamps)
    return (
        f"coalesce(contract = CASE k {cases} END "
        "AND (p ->> 'subject') = subject::text AND (p ->> 'sequence') = sequence::text, false)"
    )


@cache
def checked_events(log_schema: str, stamps: tuple[tuple[str, str], ...] = ()) -> str:
    """SQL: (id, ok, subject, sequence, type, data) of the log's events in ($1, $2].

    `stamps`: (type, current stamp) pairs, when the log has the `contract` column: a row
    with its type's current stamp is ok without the checks (consumers/replay/stamp.py), the
    others are checked.
    """
    checks, times = [], []
    for name, cls in EVENT_TYPES.items():
        first = first_time_field(cls)
        check = data_ok(cls, "d", "dt_ok") if first is not None else None
        if check is not None:
            checks.append(f"WHEN {quote(name)} THEN {check}")
            times.append(f"WHEN {quote(name)} THEN d ->> {quote(first or '')}")
    by_type = f"CASE k {' '.join(checks)} ELSE false END"
    checked = f"coalesce(CASE WHEN {envelope_ok()} THEN {by_type} ELSE false END, false)"
    trusted = _trusted(stamps) if stamps else "false"
    # Each level computes its texts once (OFFSET 0 keeps the planner from folding it into
    # the next, which would compute them again in every check that reads them); a trusted
    # row's are never computed.
    return (
        f"SELECT id, CASE WHEN trusted THEN true ELSE {checked} END AS ok, "
        "subject, sequence, k AS type, d AS data FROM ("
        f"SELECT *, CASE WHEN NOT trusted THEN {timestamp_ok('t')} END AS t_ok, "
        f"CASE WHEN NOT trusted THEN {timestamp_ok('dt')} END AS dt_ok FROM ("
        "SELECT *, CASE WHEN NOT trusted THEN p ->> 'time' END AS t, "
        f"CASE WHEN NOT trusted THEN CASE k {' '.join(times)} END END AS dt FROM ("
        f"SELECT *, {trusted} AS trusted FROM ("
        "SELECT id, event_id, subject, sequence, payload AS p, payload -> 'data' AS d, "
        f"payload ->> 'type' AS k{', contract' if stamps else ''} "
        f"FROM {log_schema}.outbox WHERE id > $1 AND id <= $2 "
        "OFFSET 0) o OFFSET 0) w OFFSET 0) y OFFSET 0) x"
    )
