"""One way to turn result dataclasses into JSON-safe dicts and back, driven by type hints.

:func:`to_jsonable` writes any dataclass (nested dataclasses, tuples, lists, dicts,
numpy scalars and arrays, dates) as plain JSON values, NaN and infinities as ``None``.
:func:`from_jsonable` reads such a dict back into the dataclass, checking every field
against its annotation, so a damaged or hand-edited file fails with a message naming
the object and the key instead of a confusing error later.

A hand-written ``to_dict``/``from_dict`` pair per class drifts out of step with the
fields; this reads the fields themselves. A library (pydantic, cattrs) would do the same
at the cost of a dependency and of models that are no longer plain frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

import numpy as np
import pandas as pd

from segmentkit.errors import DataValidationError, SegmentkitError

__all__ = ["from_jsonable", "to_jsonable"]

T = TypeVar("T")


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON values (dicts, lists, str, int, float, bool, None).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Point:
    ...     x: float
    ...     tags: tuple[str, ...] = ()
    >>> to_jsonable(Point(float("nan"), ("a",)))
    {'x': None, 'tags': ['a']}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return [to_jsonable(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return value.isoformat()
    return value


def from_jsonable(
    cls: type[T],
    data: Any,
    what: str | None = None,
    error: type[SegmentkitError] = DataValidationError,
    *,
    strict: bool = False,
) -> T:
    """Rebuild a dataclass written by :func:`to_jsonable`, checking every field's type.

    Parameters
    ----------
    cls : dataclass type
        The class to build.
    data : Any
        Parsed JSON.
    what : str, optional
        How to name the object in errors (default: the class name).
    error : SegmentkitError subclass
        Raised for a missing key or a malformed value.
    strict : bool
        Hand-written input (``params.yaml``): refuse unknown keys, read an absent
        section as empty, and never read ``None`` as NaN. Otherwise (files this package
        wrote) unknown keys are ignored, so older readers accept newer files.

    Raises
    ------
    SegmentkitError
        ``error``, naming the object and the key.

    Examples
    --------
    >>> from segmentkit.config import FeatureConfig
    >>> from_jsonable(FeatureConfig, {"windows": [7, 28]})
    FeatureConfig(windows=(7, 28), session_gap_minutes=30, key_events=('purchase', 'add_to_cart'))
    >>> from_jsonable(FeatureConfig, {"windows": [7, "x"]})
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: FeatureConfig.windows[1]: expected an integer, got 'x'
    """
    name = what or cls.__name__
    try:
        return _Reader(strict).read(cls, data, name)
    except _Problem as problem:
        raise error(str(problem)) from None


class _Problem(Exception):
    """A malformed value, with the path to it in the message."""


class _Reader:
    def __init__(self, strict: bool):
        self.strict = strict

    def read(self, hint: Any, value: Any, where: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is Any:
            return value
        if dataclasses.is_dataclass(hint):
            return self.read_dataclass(hint, value, where)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            problems = []
            for option in (a for a in args if a is not type(None)):
                try:
                    return self.read(option, value, where)
                except _Problem as problem:
                    problems.append(str(problem))
            if len(problems) == 1:
                raise _Problem(problems[0])
            raise _Problem(f"{where}: invalid value {value!r}")
        if origin is Literal:
            if value not in args:
                raise _Problem(f"{where}: expected one of {list(args)}, got {value!r}")
            return value
        if origin in (tuple, list):
            if not isinstance(value, list | tuple):
                raise _Problem(f"{where}: expected a list, got {value!r}")
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                if len(args) != len(value):
                    raise _Problem(f"{where}: expected {len(args)} values, got {len(value)}")
                pairs = enumerate(zip(args, value, strict=True))
                return tuple(self.read(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
            item = args[0] if args else Any
            items = [self.read(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if origin in (dict, Mapping) or hint in (dict, Mapping):
            if not isinstance(value, Mapping):
                raise _Problem(f"{where}: expected an object, got {type(value).__name__}")
            item = args[1] if len(args) == 2 else Any
            return {str(k): self.read(item, v, f"{where}.{k}") for k, v in value.items()}
        if hint is dt.date:
            return _date(value, where)
        if hint is float:
            if value is None and not self.strict:
                return math.nan  # how to_jsonable writes NaN
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Problem(f"{where}: expected a number, got {value!r}")
            return float(value)
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Problem(f"{where}: expected an integer, got {value!r}")
            return value
        if hint is bool:
            if not isinstance(value, bool):
                raise _Problem(f"{where}: expected true or false, got {value!r}")
            return value
        if hint is str:
            if not isinstance(value, str):
                # YAML reads 4, 2024 or 1.5 as numbers: an event or column named so is quoted.
                quote = (
                    f" (quote it: '{value}')"
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else ""
                )
                raise _Problem(f"{where}: expected a string, got {value!r}{quote}")
            return value
        raise TypeError(f"from_jsonable cannot read type {hint!r} ({where})")

    def read_dataclass(self, cls: type, value: Any, where: str) -> Any:
        if value is None and self.strict:
            value = {}  # an empty YAML section
        if not isinstance(value, Mapping):
            raise _Problem(f"{where} must be a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(value) - names)
        if unknown and self.strict:
            raise _Problem(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
        kwargs = {}
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            if field.name not in value:
                has_default = (
                    field.default is not dataclasses.MISSING
                    or field.default_factory is not dataclasses.MISSING
                )
                if has_default:
                    continue
                raise _Problem(f"{where}: missing key {field.name!r}")
            item = value[field.name]
            kwargs[field.name] = self.read(hints[field.name], item, f"{where}.{field.name}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _Problem(f"{where} is malformed: {exc}") from None


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise _Problem(f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None
