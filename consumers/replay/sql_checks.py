"""The checks of consumers/replay/checks.py as SQL over jsonb, for the in-database replay.

`event_ok(p, types)` is an SQL boolean expression, true only for an envelope that
parse_raw (raw.py) reads and whose data its model reads as it is (checks.py). It is
narrower where SQL and Python could disagree (a time PostgreSQL would read otherwise, a
pattern whose regular expression could mean something else in SQL): what it refuses goes
through the models anyway. It never raises: every cast is guarded by a CASE, so a
malformed row makes the expression false instead of failing the statement.
"""

import dataclasses
import re
from datetime import datetime
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from consumers.replay.checks import _checks

UUID_RE = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# RFC 3339 with Z or an offset, each part in its range: PostgreSQL would read a 24th hour,
# a 60th second or a year 0 otherwise than Python. Years 1000-9899 leave room for offsets.
TIME_RE = (
    r"^(1[0-9]|[2-8][0-9]|9[0-8])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)
# A pattern is used in SQL only if made of these parts (no ranges, no groups), and then
# only on printable ASCII without spaces, where Python and PostgreSQL read them alike.
_SAFE_PATTERN = re.compile(r"\^(?:[A-Za-z0-9@_.+*?]|\\[s.@+]|\[\^?(?:[A-Za-z0-9@_.]|\\s)+\])*\$")
_PRINTABLE = "^[!-~]*$"


def quote(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def member(jsonb: str, name: str) -> str:
    """SQL: the member `name` of the jsonb object `jsonb` (NULL when absent)."""
    return f"({jsonb} -> {quote(name)})"


def timestamp_ok(t: str) -> str:
    """SQL: the text `t` is a time the models and PostgreSQL read as the same instant."""
    y, m, d = f"substr({t}, 1, 4)::int", f"substr({t}, 6, 2)", f"substr({t}, 9, 2)::int"
    leap = f"({y} % 4 = 0 AND ({y} % 100 <> 0 OR {y} % 400 = 0))"
    last_day = (
        f"CASE {m} WHEN '02' THEN CASE WHEN {leap} THEN 29 ELSE 28 END "
        "WHEN '04' THEN 30 WHEN '06' THEN 30 WHEN '09' THEN 30 WHEN '11' THEN 30 ELSE 31 END"
    )
    return f"(CASE WHEN {t} ~ {quote(TIME_RE)} THEN {d} <= {last_day} ELSE false END)"


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
    if annotation is datetime:
        return f"({_string(v)} AND {timestamp_ok(_text(v))})"
    if annotation is UUID:
        return f"({_string(v)} AND {_text(v)} ~ {quote(UUID_RE)})"
    return None


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
            parts += [
                f"{_text(v)} ~ {quote(_PRINTABLE)}",
                f"{_text(v)} ~ {quote(values['pattern'])}",
            ]
        if "max_length" in values:
            parts.append(f"length({_text(v)}) <= {int(values['max_length'])}")
    return "(" + " AND ".join(parts) + ")"


def data_ok(cls: type[BaseModel], d: str) -> str | None:
    """SQL true when the jsonb object `d` is data `cls` reads as it is; None: not in SQL."""
    if _checks(cls) is None:  # checks.py leaves this model to pydantic: so does SQL
        return None
    parts = [f"jsonb_typeof({d}) = 'object'"]
    for name, field in cls.model_fields.items():
        check = _value_check(field.annotation, list(field.metadata), member(d, name))
        if check is None:
            return None
        has = f"({d} ? {quote(name)})"
        parts.append(f"({has} AND {check})" if field.is_required() else f"(NOT {has} OR {check})")
    return "(" + " AND ".join(parts) + ")"


def envelope_ok(p: str) -> str:
    """SQL true when the jsonb `p` is an envelope parse_raw reads (consumers/replay/raw.py)."""
    event_id, subject, time = member(p, "id"), member(p, "subject"), member(p, "time")
    kind, source, sequence = member(p, "type"), member(p, "source"), member(p, "sequence")
    return "(" + " AND ".join([
        f"jsonb_typeof({p}) = 'object'",
        f"{_string(event_id)} AND {_text(event_id)} ~ {quote(UUID_RE)}",
        f"{_string(subject)} AND {_text(subject)} ~ {quote(UUID_RE)}",
        f"jsonb_typeof({sequence}) = 'number' AND {_text(sequence)} ~ '^[1-9][0-9]{{0,8}}$'",
        f"{_string(kind)} AND {_text(kind)} <> ''",
        f"{_string(source)} AND {_text(source)} <> ''",
        f"{_string(time)} AND {timestamp_ok(_text(time))}",
        f"jsonb_typeof({member(p, 'data')}) = 'object'",
        f"{member(member(p, 'data'), 'user_id')} = {subject}",
        f"(NOT {p} ? 'specversion' OR {member(p, 'specversion')} = '\"1.0\"')",
        f"(NOT {p} ? 'datacontenttype' "
        f"OR {member(p, 'datacontenttype')} = '\"application/json\"')",
    ]) + ")"  # fmt: skip


def event_ok(p: str, types: dict[str, type[BaseModel]]) -> str:
    """SQL true when `p` is an envelope of one of `types` whose data its model reads as is."""
    cases = []
    for name, cls in types.items():
        check = data_ok(cls, member(p, "data"))
        if check is not None:
            cases.append(f"WHEN {quote(name)} THEN {check}")
    kind = _text(member(p, "type"))
    by_type = f"CASE {kind} {' '.join(cases)} ELSE false END" if cases else "false"
    return f"coalesce(CASE WHEN {envelope_ok(p)} THEN {by_type} ELSE false END, false)"
