"""Checking an event's raw data as its model would, without building the model.

`check_data(cls, data)` accepts exactly the data pydantic would validate into `cls` in the
forms our producers write, and raises NotBulkableError for anything else: data the model
would refuse, and data it would accept only by converting it (a time without an offset, a
number for a string). The checks come from the model's own fields, for the annotations
the contract uses (str, bool, datetime, UUID, Literal, optional, a string with a pattern); a
model with any other annotation is left to pydantic (`model_validate`).
"""

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from consumers.replay.raw import NotBulkableError

# RFC 3339 with an offset, the form every producer of ours writes. The models take more
# (naive times, unix numbers): those fall back to them.
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII)

Check = Callable[[Any], bool]


def timestamp(value: Any) -> datetime:
    """An RFC 3339 time with an offset, parsed as the models parse it."""
    if type(value) is not str or not TIMESTAMP.fullmatch(value):
        raise NotBulkableError("a time the fast path does not read")
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # a well-formed string that names no time (a 61st second)
        raise NotBulkableError("a time the fast path does not read") from None


def _is_timestamp(value: Any) -> bool:
    try:
        timestamp(value)
    except NotBulkableError:
        return False
    return True


def check_data(cls: type[BaseModel], data: dict[str, Any]) -> None:
    """Raise NotBulkableError unless `cls` would read `data` as it is (see the module)."""
    checks = _checks(cls)
    if checks is None:
        try:
            cls.model_validate(data)
        except ValidationError:
            raise NotBulkableError(f"a malformed {cls.__name__}") from None
        return
    for name, required, check in checks:
        if name in data:
            if not check(data[name]):
                raise NotBulkableError(f"{cls.__name__}.{name} as the fast path does not read it")
        elif required:
            raise NotBulkableError(f"{cls.__name__}.{name} is missing")


@cache
def _checks(cls: type[BaseModel]) -> list[tuple[str, bool, Check]] | None:
    """One check per field, or None if a field's annotation is not one handled here."""
    checks = []
    for name, field in cls.model_fields.items():
        check = _check_for(field.annotation, field.metadata)
        if check is None or field.alias not in (None, name):
            return None
        required = field.is_required()
        if not required and field.default is not PydanticUndefined and not check(field.default):
            return None  # a default the model would not validate: let the model say
        checks.append((name, required, check))
    return checks


def _check_for(annotation: Any, metadata: list[Any]) -> Check | None:
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        if len(members) != 1 or len(get_args(annotation)) != 2:
            return None
        inner = _check_for(members[0], metadata)
        return None if inner is None else (lambda v: v is None or inner(v))
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _check_for(base, [*metadata, *extra])
    if origin is Literal:
        allowed = frozenset(get_args(annotation))
        if not all(type(a) is str for a in allowed) or metadata:
            return None
        return lambda v: type(v) is str and v in allowed
    if annotation is str:
        return _string_check(metadata)
    if metadata:
        return None
    if annotation is datetime:
        return _is_timestamp
    if annotation is bool:
        # Only JSON's true and false: pydantic would also convert "yes" or 1.
        return lambda v: type(v) is bool
    if annotation is UUID:
        return lambda v: type(v) is str and _CANONICAL.fullmatch(v) is not None
    return None


def _string_check(metadata: list[Any]) -> Check | None:
    pattern: re.Pattern[str] | None = None
    longest: int | None = None
    for item in metadata:
        known = {"pattern", "max_length"}
        if isinstance(item, FieldInfo) or not dataclasses.is_dataclass(item):
            return None
        values = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
        values = {k: v for k, v in values.items() if v is not None}
        if not set(values) <= known:
            return None
        if "pattern" in values:
            text = values["pattern"]
            # Anchored both ends: fullmatch (Python's `$` would also match before a "\n").
            if not (text.startswith("^") and text.endswith("$")):
                return None
            pattern = re.compile(text[1:-1])
        longest = values.get("max_length", longest)
    if pattern is None and longest is None:
        return lambda v: type(v) is str
    return lambda v: (
        type(v) is str
        and (longest is None or len(v) <= longest)
        and (pattern is None or pattern.fullmatch(v) is not None)
    )


_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
