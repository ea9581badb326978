"""Strict, typed validation of the JSON edgevid reads (metadata, sidecars, manifests, configs).

The schema of each document is its dataclass: the field types come from the annotations
(``int``, ``float``, ``str``, ``list[str]``, ``tuple[float, float, float]``, ``X | None``,
``dict[str, Any]``, a nested dataclass) and the value rules (ranges, choices) from
``constraints``. A field without a default is required; so is every field named in
``required``. Keys this edgevid does not know are ignored, so a file written by a newer
edgevid still loads (nothing unknown is ever used).

Every violation is found, not just the first, and reported as ``where.field: problem``;
:func:`validate` joins them into one line for the one error the user sees.

Why not pydantic: the runtime and the core must stay light (numpy, OpenCV, ONNX Runtime on a
Jetson); this covers the handful of flat documents edgevid reads in ~150 lines, with no
compiled dependency and no import cost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union

Rule = Callable[[Any], str | None]  # returns the problem with a value, or None when it is fine


# --- value rules ---------------------------------------------------------------------------
def at_least(low: float) -> Rule:
    return lambda v: None if v is None or v >= low else f"must be >= {low}, got {v!r}"


def above(low: float) -> Rule:
    return lambda v: None if v is None or v > low else f"must be > {low}, got {v!r}"


def at_most(high: float) -> Rule:
    return lambda v: None if v is None or v <= high else f"must be <= {high}, got {v!r}"


def between(low: float, high: float) -> Rule:
    def rule(v: Any) -> str | None:
        if v is None:
            return None
        values = v if isinstance(v, (list, tuple)) else [v]
        bad = [x for x in values if not low <= x <= high]
        return f"must be within [{low}, {high}], got {v!r}" if bad else None

    return rule


def one_of(*choices: Any) -> Rule:
    def rule(v: Any) -> str | None:
        if v is None or v in choices:
            return None
        return f"must be one of {', '.join(map(str, choices))}, got {v!r}"

    return rule


def non_empty(v: Any) -> str | None:
    return "must not be empty" if v is not None and len(v) == 0 else None


def unique(v: Any) -> str | None:
    if v is None:
        return None
    dup = sorted({x for x in v if v.count(x) > 1}, key=str)
    return f"has repeated entries {dup}" if dup else None


def each(rule: Rule) -> Rule:
    def check(v: Any) -> str | None:
        for x in v or ():
            problem = rule(x)
            if problem:
                return problem
        return None

    return check


# --- type checking -------------------------------------------------------------------------
def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _found(value: Any) -> str:
    kinds = {bool: "true/false", int: "integer", float: "number", str: "string",
             list: "list", dict: "object", type(None): "null"}  # fmt: skip
    text = repr(value)
    return f"{kinds.get(type(value), type(value).__name__)} {text[:40]}"


def check_type(value: Any, hint: Any, where: str, problems: list[str]) -> None:
    """Append to ``problems`` every way ``value`` (parsed JSON) fails the type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return
    if origin in (Union, types.UnionType):
        for a in args:
            trial: list[str] = []
            check_type(value, a, where, trial)
            if not trial:
                return
        problems.append(f"{where}: expected {_type_name(hint)}, got {_found(value)}")
        return
    if dataclasses.is_dataclass(hint):
        problems.extend(check_fields(hint, value, where))
        return
    if hint is type(None):
        ok = value is None
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            problems.append(f"{where}: must be a finite number, got {value!r}")
            return
    elif hint is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple):
        if not isinstance(value, list):  # JSON has no tuples
            problems.append(f"{where}: expected {_type_name(hint)}, got {_found(value)}")
            return
        if origin is tuple and args and args[-1] is not Ellipsis and len(value) != len(args):
            problems.append(f"{where}: expected {len(args)} values, got {len(value)}")
            return
        item_hints = [args[0]] * len(value) if origin is list or args[-1:] == (Ellipsis,) else args
        for i, (v, h) in enumerate(zip(value, item_hints, strict=False)):
            check_type(v, h, f"{where}[{i}]", problems)
        return
    elif origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object, got {_found(value)}")
            return
        for k, v in value.items():
            check_type(v, args[1] if args else Any, f"{where}.{k}", problems)
        return
    else:  # pragma: no cover - a schema author's mistake, not a user's
        raise TypeError(f"schema cannot check {hint!r}")
    if not ok:
        problems.append(f"{where}: expected {_type_name(hint)}, got {_found(value)}")


def check_fields(
    cls: type,
    data: Any,
    where: str,
    constraints: Mapping[str, Rule | tuple[Rule, ...]] | None = None,
    required: tuple[str, ...] = (),
) -> list[str]:
    """Every problem of ``data`` (a parsed JSON object) as an instance of dataclass ``cls``."""
    if not isinstance(data, dict):
        return [f"{where}: expected an object, got {_found(data)}"]
    constraints = constraints if constraints is not None else getattr(cls, "CONSTRAINTS", {})
    required = required or getattr(cls, "REQUIRED", ())
    hints = typing.get_type_hints(cls)
    problems: list[str] = []
    for f in dataclasses.fields(cls):
        name = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            no_default = (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            if no_default or f.name in required:
                problems.append(f"{name}: missing")
            continue
        before = len(problems)
        check_type(data[f.name], hints[f.name], name, problems)
        if len(problems) > before:
            continue  # a value of the wrong type is not also checked against its range
        rules = constraints.get(f.name, ())
        for rule in rules if isinstance(rules, tuple) else (rules,):
            problem = rule(data[f.name])
            if problem:
                problems.append(f"{name}: {problem}")
    return problems


def validate(cls: type, data: Any, what: str, **kw: Any) -> None:
    """Raise ``ValueError`` with every problem on one line (``what: a; b; c``)."""
    problems = check_fields(cls, data, "", **kw)
    if problems:
        shown = problems[:8] + ([f"and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ValueError(f"{what}: {'; '.join(shown)}")


# --- reading: the one JSON loader of every file edgevid reads -------------------------------
MAX_BYTES = 256 * 2**20  # larger JSON files are refused before they are read
MAX_DEPTH = 32  # deeper nesting is refused (edgevid's own files nest a few levels)
INT_RANGE = (-(2**63), 2**63 - 1)  # integers beyond 64 bits are refused


class _OutOfRange(ValueError):
    """A number JSON holds that no field of edgevid's files can take."""


def _int(text: str) -> int:
    if len(text) > 20:  # before the conversion: a 400-digit (or 10^6-digit) integer
        raise _OutOfRange(f"integer {text[:12]}... ({len(text)} digits) is out of range")
    value = int(text)
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise _OutOfRange(f"integer {text} is out of range (64 bits)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(f"number {text[:24]} is out of range")
    return value


def _constant(text: str) -> float:
    raise _OutOfRange(f"{text} is not a number (JSON has no NaN or Infinity)")


def read_text(source: str | os.PathLike, what: str, error: type[Exception],
              max_bytes: int = MAX_BYTES) -> str:  # fmt: skip
    """The UTF-8 text of the regular file ``source``, at most ``max_bytes``; anything else
    (missing, a folder, a FIFO or device, too large, unreadable, not UTF-8) raises ``error``."""
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise error(f"{source}: {what} not found") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise error(
            f"{source}: {what} cannot be read ({getattr(e, 'strerror', None) or e})"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise error(f"{source}: {what} is {kind}")
    try:
        with open(source, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{source}: {what} cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{source}: {what} is larger than {max_bytes // 2**20} MiB, edgevid's limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{source}: {what} is a binary file, not JSON (not UTF-8 at byte {e.start})"
        ) from None


def load_json(
    source: str | os.PathLike,
    what: str,
    error: type[Exception],
    text: str | None = None,
    max_bytes: int = MAX_BYTES,
    finite: bool = True,
) -> Any:
    """The JSON value of the file ``source`` (or of ``text``, ``source`` naming it), or
    ``error`` with one line: not a regular file, over ``max_bytes``, not UTF-8, not JSON,
    nested deeper than MAX_DEPTH, a number out of range (an integer beyond 64 bits; NaN,
    Infinity, 1e400 unless ``finite`` is False: a resume state records an infinite best
    loss), or text that cannot be written back as UTF-8 (a lone surrogate)."""
    if text is None:
        text = read_text(source, what, error, max_bytes)
    elif len(text) > max_bytes:
        raise error(f"{source}: {what} is larger than {max_bytes // 2**20} MiB, edgevid's limit")
    try:
        floats = {"parse_float": _float, "parse_constant": _constant} if finite else {}
        data = json.loads(text, parse_int=_int, **floats)
    except json.JSONDecodeError as e:
        raise error(f"{source}: {what} is not valid JSON ({e.msg})") from None
    except _OutOfRange as e:
        raise error(f"{source}: invalid {what}: {e}") from None
    except (RecursionError, ValueError) as e:  # nesting beyond the parser's stack, digits
        raise error(f"{source}: {what} is not usable JSON ({type(e).__name__})") from None
    problem = _shape_problem(data)
    if problem:
        raise error(f"{source}: {what} {problem}")
    return data


def _shape_problem(data: Any) -> str | None:
    """Too deep, or a string (value or key) that is not encodable text; None when fine."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    f"holds text that is not valid Unicode ({ascii(value)[:40]}: a lone surrogate)"
                )
    return None


def read_json(
    cls: type,
    source: str | os.PathLike,
    what: str,
    error: type[Exception],
    text: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """The JSON object ``text`` (default: the file ``source``) checked against ``cls``; a
    missing, binary, malformed or invalid document raises ``error`` with one line."""
    data = load_json(source, what, error, text)
    try:
        validate(cls, data, f"{source}: invalid {what}", **kw)
    except ValueError as e:
        raise error(str(e)) from None
    return data
