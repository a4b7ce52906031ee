"""Build frozen dataclasses from plain dicts, with errors that name the file, the key and what is allowed.

Fields declare their constraints in `metadata` through `spec()`:
``choices`` (allowed values, or a callable returning them when a file is validated, for names
registered by plugins), ``range`` (inclusive bounds, ``None`` for open), ``odd`` (odd ints).
The same machinery serves trial configs and sweep files, so both report mistakes alike: `build`
reads a whole section, `coerce` + `check_constraints` one value, `lookup` finds a dotted field.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Callable, Collection, Mapping

from v1sweep.errors import ConfigError
from v1sweep.registry import load_plugins


def spec(default: Any = dataclasses.MISSING, *, choices: Collection[Any] | Callable[[], Collection[Any]] | None = None,
         range: tuple[float | None, float | None] | None = None, odd: bool = False,
         doc: str = "", default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with validation metadata."""
    meta = {"choices": choices, "range": range, "odd": odd, "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def closest(name: str, valid: list[str]) -> str:
    """A ' (did you mean X?)' hint, or ''."""
    lowered = {v.lower(): v for v in valid}  # case-insensitive: 'CIFAR10' -> 'cifar10'
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" (did you mean {lowered[match[0]]!r}?)" if match else ""


def build(cls: type, data: Any, *, file: str | None = None, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a mapping, validating every field recursively."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping of keys, got {type(data).__name__}", file=file,
                          key=prefix.rstrip(".") or None)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            valid = sorted(fields)
            raise ConfigError(f"unknown key{closest(str(key), valid)}; valid keys: {', '.join(valid)}",
                              file=file, key=f"{prefix}{key}")
    values = {}
    for name, field in fields.items():
        if name not in data:
            continue
        values[name] = _convert(hints[name], data[name], field, file=file, key=f"{prefix}{name}")
    try:
        obj = cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(str(exc), file=file, key=prefix.rstrip(".") or None) from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            if exc.file is None and file is not None:
                raise ConfigError(str(exc), file=file) from None
            raise
    return obj


def _convert(hint: Any, value: Any, field: dataclasses.Field, *, file: str | None, key: str) -> Any:
    value = coerce(hint, value, file=file, key=key)
    check_constraints(value, field.metadata, file=file, key=key)
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(hint: Any, value: Any, *, file: str | None, key: str) -> Any:
    """`value` as type `hint` (unions, nested dataclasses, tuples, dicts, scalars); ConfigError if not."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, file=file, key=key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[-1]
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type, hint), value, file=file, prefix=f"{key}.")
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", file=file, key=key)
        item = args[0] if args else Any
        return tuple(coerce(item, v, file=file, key=f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {value!r}", file=file, key=key)
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true or false, got {value!r}", file=file, key=key)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"expected an integer, got {value!r}", file=file, key=key)
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", file=file, key=key)
        if not math.isfinite(value):
            raise ConfigError(f"expected a finite number, got {value!r}", file=file, key=key)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", file=file, key=key)
        return value
    raise ConfigError(f"cannot read a value of type {_type_name(hint)}", file=file, key=key)


def check_constraints(value: Any, meta: Mapping, *, file: str | None, key: str) -> None:
    """The `spec()` constraints of a field's `meta` (choices, range, odd) on a coerced `value`."""
    if value is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    choices = meta.get("choices")
    if callable(choices):  # a registry's names, read now: plugin modules register theirs first
        load_plugins()
        choices = tuple(choices())
    for item in items:
        if choices is not None and item not in choices:
            hint = closest(str(item), [str(c) for c in choices]) if isinstance(item, str) else ""
            raise ConfigError(f"{item!r} is not allowed{hint}; allowed: {', '.join(map(str, choices))}",
                              file=file, key=key)
        bounds = meta.get("range")
        if bounds is not None and isinstance(item, (int, float)):
            lo, hi = bounds
            if (lo is not None and item < lo) or (hi is not None and item > hi):
                lo_s = "-inf" if lo is None else lo
                hi_s = "inf" if hi is None else hi
                raise ConfigError(f"{item!r} is out of range; allowed: [{lo_s}, {hi_s}]", file=file, key=key)
        if meta.get("odd") and isinstance(item, int) and item % 2 == 0:
            lo, hi = meta.get("range") or (None, None)
            within = f" in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ConfigError(f"{item!r} must be odd; allowed: odd integers{within} (e.g. {item - 1} or {item + 1})",
                              file=file, key=key)


class UnknownField(LookupError):
    """`lookup` found no field: `reason` is "unknown" (no such name), "section" (the name is a
    nested dataclass, `section` it), or "scalar" (a dotted path continues past a plain field)."""

    def __init__(self, dotted: str, reason: str, section: Any = None) -> None:
        self.dotted = dotted
        self.reason = reason
        self.section = section
        super().__init__(f"{dotted}: {reason}")


def lookup(cls: Any, dotted: str) -> tuple[Any, dataclasses.Field]:
    """(type hint, field) of the dotted key of dataclass `cls` (``"rf.strategy"``); `UnknownField`
    otherwise, so each caller words the error for its own file."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise UnknownField(dotted, "unknown")
        hint = typing.get_type_hints(cls)[part]
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(hint):
            if last:
                raise UnknownField(dotted, "section", hint)
            cls = hint
            continue
        if not last:
            raise UnknownField(dotted, "scalar")
        return hint, fields[part]
    raise AssertionError(dotted)


def is_int_hint(hint: Any) -> bool:
    """`int` or `int | None`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args == [int]


def is_number_hint(hint: Any) -> bool:
    """int, float, or an optional of them."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return all(a in (int, float) for a in args)


def to_dict(obj: Any) -> Any:
    """A plain, YAML/JSON-ready dict of a (nested) dataclass; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key!r} conflicts with a value set at {part!r}", key=key)
        node[parts[-1]] = value
    return tree


def deep_merge(base: Mapping, override: Mapping) -> dict[str, Any]:
    """Recursively overlay `override` on `base` (mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
