"""The checks of consumers/replay/checks.py and raw.py as SQL, for the in-database replay.

`checked_events(log_schema)` selects the log's events in a position range with `ok`: true
only for an envelope parse_raw (raw.py) reads whose data its model reads as it is
(checks.py). It is narrower where SQL and Python could disagree (a time PostgreSQL would
read otherwise, a pattern whose regular expression could mean something else in SQL):
what it refuses goes through the models anyway. The envelope's id, subject and sequence
must equal the outbox row's typed columns, which proves their form with one comparison
each (regular expressions cost PostgreSQL microseconds an event). Nothing here raises:
a cast only runs once its text is proved to fit, so a malformed row makes `ok` false
instead of failing the statement.
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


def _digits(*parts: str) -> str:
    return f"ltrim({' || '.join(parts)}, '0123456789') = ''"


def _fraction_ok(f: str) -> str:
    return (
        f"({f} = '' OR (left({f}, 1) = '.' AND length({f}) BETWEEN 2 AND 7 "
        f"AND {_digits(f'substr({f}, 2)')}))"
    )


def timestamp_ok(t: str) -> str:
    """SQL: the text `t` is RFC 3339 with Z or an offset, each part in its range.

    PostgreSQL would read a 24th hour, a 60th second or a year 0 otherwise than Python, so
    those are refused; years 1000-9899 leave room for any offset. String functions only:
    a regular expression costs PostgreSQL several times more. `t` should be a column (it is
    read many times).
    """
    y, mo, d = f"substr({t}, 1, 4)", f"substr({t}, 6, 2)", f"substr({t}, 9, 2)"
    h, mi, s = f"substr({t}, 12, 2)", f"substr({t}, 15, 2)", f"substr({t}, 18, 2)"
    shape = (
        f"length({t}) BETWEEN 20 AND 32 AND {t} LIKE '____-__-__T__:__:__%' "
        f"AND {_digits(y, mo, d, h, mi, s)}"
    )
    leap = f"({y}::int % 4 = 0 AND ({y}::int % 100 <> 0 OR {y}::int % 400 = 0))"
    last_day = (
        f"CASE {mo} WHEN '02' THEN CASE WHEN {leap} THEN '29' ELSE '28' END "
        "WHEN '04' THEN '30' WHEN '06' THEN '30' WHEN '09' THEN '30' WHEN '11' THEN '30' "
        "ELSE '31' END"
    )
    ranges = (
        f"{_c(y)} BETWEEN '1000' AND '9899' AND {_c(mo)} BETWEEN '01' AND '12' "
        f"AND {_c(d)} >= '01' AND ({_c(d)} <= '28' OR {_c(d)} <= {last_day}) "
        f"AND {_c(h)} <= '23' AND {_c(mi)} <= '59' AND {_c(s)} <= '59'"
    )
    length = f"length({t})"
    offset_hours, offset_minutes = f"substr({t}, {length} - 4, 2)", f"right({t}, 2)"
    zone = (
        f"((right({t}, 1) = 'Z' AND {_fraction_ok(f'substr({t}, 20, {length} - 20)')}) "
        f"OR ({length} >= 25 AND substr({t}, {length} - 5, 1) IN ('+', '-') "
        f"AND substr({t}, {length} - 2, 1) = ':' AND {_digits(offset_hours, offset_minutes)} "
        f"AND {_c(offset_hours)} <= '14' AND {_c(offset_minutes)} <= '59' "
        f"AND {_fraction_ok(f'substr({t}, 20, greatest({length} - 25, 0))')}))"
    )
    return f"(CASE WHEN {shape} THEN {ranges} AND {zone} ELSE false END)"


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


def data_ok(cls: type[BaseModel], d: str, dt: str) -> str | None:
    """SQL true when the jsonb object `d` is data `cls` reads as it is; None: not in SQL.

    `user_id` is proved by the envelope's check (it equals the subject); `dt` is the text
    of the first datetime field (`first_time_field`).
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
            check: str | None = f"({_string(v)} AND {timestamp_ok(dt)})"
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
        f"jsonb_typeof(p -> 'time') = 'string' AND {timestamp_ok('t')}",
        "jsonb_typeof(d) = 'object' AND (d ->> 'user_id') = subject::text",
        "(NOT p ? 'specversion' OR p -> 'specversion' = '\"1.0\"')",
        "(NOT p ? 'datacontenttype' OR p -> 'datacontenttype' = '\"application/json\"')",
    ])  # fmt: skip


@cache
def checked_events(log_schema: str) -> str:
    """SQL: (id, ok, subject, sequence, type, data) of the log's events in ($1, $2]."""
    checks, times = [], []
    for name, cls in EVENT_TYPES.items():
        first = first_time_field(cls)
        check = data_ok(cls, "d", "dt") if first is not None else None
        if check is not None:
            checks.append(f"WHEN {quote(name)} THEN {check}")
            times.append(f"WHEN {quote(name)} THEN d ->> {quote(first or '')}")
    by_type = f"CASE k {' '.join(checks)} ELSE false END"
    # MATERIALIZED: each text is extracted once, not again in every check that reads it.
    return (
        "WITH x AS MATERIALIZED (SELECT id, event_id, subject, sequence, p, d, k, "
        f"p ->> 'time' AS t, CASE k {' '.join(times)} END AS dt FROM ("
        "SELECT id, event_id, subject, sequence, payload AS p, payload -> 'data' AS d, "
        f"payload ->> 'type' AS k FROM {log_schema}.outbox WHERE id > $1 AND id <= $2) o) "
        "SELECT id, coalesce(CASE WHEN " + envelope_ok() + f" THEN {by_type} ELSE false END, "
        "false) AS ok, subject, sequence, k AS type, d AS data FROM x"
    )
