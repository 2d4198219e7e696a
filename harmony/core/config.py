"""The config validation language: TOML read with :mod:`tomllib` and validated strictly against a declared schema.

Every key must be declared: an unknown key, a wrong type or an out-of-range value raises
:class:`~harmony.core.errors.ConfigError` naming the file, the dotted key path and the value. Every TOML file
harmony reads (experiments, designs, phantom specs, scanner profiles) goes through :func:`validate`, and so do
``--set dotted.key=value`` overrides. Each stage declares its own section with :class:`Field` and
:class:`Section`; :mod:`harmony.workflows.experiment` assembles them.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony.core.errors import ConfigError

_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One scalar or list setting.

    ``type`` is ``int``, ``float``, ``str``, ``bool``, ``list`` or ``dict`` (a free-form table, checked by
    ``check`` only). For lists, ``item`` validates each element (a :class:`Field` or :class:`Section`).
    ``check`` receives the typed value and returns an error message, or ``None`` when it is fine.
    """

    type: type
    default: Any = _REQUIRED
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: Sequence[Any] | None = None
    item: Field | Section | None = None
    min_items: int = 0
    check: Callable[[Any], str | None] | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Section:
    """A TOML table whose keys are declared in ``fields``. ``required=False`` sections may be absent."""

    fields: Mapping[str, Field | Section]
    doc: str = ""
    required: bool = False
    check: Callable[[dict], str | None] | None = None
    #: A section that may be absent altogether (not filled with defaults): resolves to ``None``.
    optional: bool = False


@dataclass(frozen=True)
class Where:
    """Where a value came from: a file (and for overrides, the ``--set`` text)."""

    file: str
    overridden: frozenset[str] = field(default_factory=frozenset)

    def name(self, key: str) -> str:
        return "--set" if key in self.overridden else self.file


def _fail(where: Where, key: str, message: str, value: Any = _REQUIRED) -> ConfigError:
    got = "" if value is _REQUIRED else f", got {value!r}"
    return ConfigError(f"{where.name(key)}: {key or '<top level>'}: {message}{got}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def validate(data: Any, schema: Section, *, file: str | os.PathLike = "<config>", prefix: str = "",
             _where: Where | None = None) -> dict[str, Any]:
    """Validate ``data`` against ``schema`` and return a new dict with every default filled in.

    >>> schema = Section({"seed": Field(int, 0, min=0), "name": Field(str)})
    >>> validate({"name": "demo"}, schema, file="x.toml")
    {'seed': 0, 'name': 'demo'}
    >>> validate({"name": "demo", "sede": 1}, schema, file="x.toml")
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: x.toml: sede: unknown key (known: name, seed), got 1
    """
    where = _where or Where(str(file))
    return _section(data, schema, where, prefix)


def _section(data: Any, schema: Section, where: Where, prefix: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(where, prefix, "expected a table", data)
    for key in data:
        if key not in schema.fields:
            known = ", ".join(sorted(schema.fields))
            raise _fail(where, _join(prefix, key), f"unknown key (known: {known})", data[key])
    out: dict[str, Any] = {}
    for key, spec in schema.fields.items():
        path = _join(prefix, key)
        if isinstance(spec, Section):
            if key in data:
                out[key] = _section(data[key], spec, where, path)
            elif spec.required:
                raise _fail(where, path, "required table is missing")
            else:
                out[key] = None if spec.optional else _section({}, spec, where, path)
        elif key in data:
            out[key] = _value(data[key], spec, where, path)
        elif spec.required:
            raise _fail(where, path, "required key is missing")
        else:
            out[key] = copy.deepcopy(spec.default)
    if schema.check is not None:
        message = schema.check(out)
        if message:
            raise _fail(where, prefix, message)
    return out


_TYPE_NAMES = {int: "an integer", float: "a number", str: "text", bool: "true or false",
               list: "a list", dict: "a table"}


def _value(value: Any, spec: Field, where: Where, path: str) -> Any:
    typ = spec.type
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise _fail(where, path, f"expected {_TYPE_NAMES.get(typ, typ.__name__)}", value)
    if typ is float and not math.isfinite(value):
        raise _fail(where, path, "must be finite", value)
    if spec.choices is not None and value not in spec.choices:
        raise _fail(where, path, f"must be one of {list(spec.choices)}", value)
    if spec.min is not None and (value < spec.min or (spec.min_exclusive and value == spec.min)):
        raise _fail(where, path, f"must be {'>' if spec.min_exclusive else '>='} {spec.min}", value)
    if spec.max is not None and value > spec.max:
        raise _fail(where, path, f"must be <= {spec.max}", value)
    if typ is list:
        if len(value) < spec.min_items:
            raise _fail(where, path, f"needs at least {spec.min_items} item(s)", value)
        if spec.item is not None:
            value = [
                _section(v, spec.item, where, f"{path}[{i}]") if isinstance(spec.item, Section)
                else _value(v, spec.item, where, f"{path}[{i}]")
                for i, v in enumerate(value)
            ]
    if spec.check is not None:
        message = spec.check(value)
        if message:
            raise _fail(where, path, message, value)
    return value


# -- reading files and overrides ---------------------------------------------------------------------

def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error raises ConfigError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is read as a TOML value, or as plain text when it is not one.

    >>> parse_override("extraction.settings.setting.binWidth=24")
    ('extraction.settings.setting.binWidth', 24)
    >>> parse_override("experiment.name=my run")
    ('experiment.name', 'my run')
    >>> parse_override("engine.workers=[1, 2]")
    ('engine.workers', [1, 2])
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: expected dotted.key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], frozenset[str]]:
    """Return a copy of ``data`` with each ``dotted.key=value`` set, and the set of overridden key paths."""
    out = copy.deepcopy(dict(data))
    keys = set()
    for text in overrides:
        key, value = parse_override(text)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set: {'.'.join(parts[: i + 1])} is not a table, cannot set {key!r}")
            node = child
        node[parts[-1]] = value
        keys.add(key)
    return out, frozenset(keys)


def load(path: str | os.PathLike, schema: Section, overrides: Sequence[str] = (), prefix: str = "") -> dict[str, Any]:
    """Read a TOML file, apply overrides and validate; errors name the file (or ``--set``) and key."""
    raw, overridden = apply_overrides(read_toml(path), overrides)
    return _section(raw, schema, Where(str(path), overridden), prefix)
