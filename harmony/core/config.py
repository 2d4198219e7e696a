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

__all__ = ["Field", "Section", "validate", "read_toml", "parse_override", "apply_overrides", "load"]

_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One scalar or list setting of a :class:`Section`.

    Parameters
    ----------
    type : type
        ``int``, ``float``, ``str``, ``bool``, ``list`` or ``dict`` (a free-form table, checked by ``check``
        only). An integer is accepted for a float (and converted); a bool is never an integer.
    default : optional
        The value when the key is absent; without one the key is required.
    min, max : float, optional
        Bounds of a number (inclusive; ``min_exclusive=True`` excludes ``min``).
    min_exclusive : bool, default False
        ``min`` itself is refused.
    choices : sequence, optional
        The allowed values.
    item : Field or Section, optional
        For lists: validates each element.
    min_items : int, default 0
        For lists: the fewest elements allowed.
    check : callable, optional
        Receives the typed value and returns an error message, or ``None`` when it is fine.
    doc : str, default ""
        What the setting means (shown in the docs and ``harmony`` help).

    Examples
    --------
    >>> schema = Section({"sigma": Field(list, [1.0], item=Field(float, min=0.0, min_exclusive=True), min_items=1)})
    >>> validate({"sigma": [1, 2.5]}, schema)
    {'sigma': [1.0, 2.5]}
    >>> validate({"sigma": [0]}, schema, file="params.toml")
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: params.toml: sigma[0]: must be > 0.0, got 0.0
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
        """Whether the key must be given (the field has no default)."""
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Section:
    """A TOML table whose keys are declared in ``fields``: every other key is refused.

    Parameters
    ----------
    fields : mapping of str to Field or Section
        The declared keys, in order.
    doc : str, default ""
        What the table is.
    required : bool, default False
        The table must be given; otherwise an absent table is filled with its defaults.
    check : callable, optional
        Receives the validated table (defaults filled in) and returns an error message, or ``None``.
    optional : bool, default False
        An absent table resolves to ``None`` instead of its defaults.

    Examples
    --------
    >>> grid = Section({"size": Field(int, 64, min=1)}, doc="the grid")
    >>> validate({}, Section({"grid": grid, "noise": Section({"sd": Field(float, 0.0)}, optional=True)}))
    {'grid': {'size': 64}, 'noise': None}
    """

    fields: Mapping[str, Field | Section]
    doc: str = ""
    required: bool = False
    check: Callable[[dict], str | None] | None = None
    #: A section that may be absent altogether (not filled with defaults): resolves to ``None``.
    optional: bool = False


@dataclass(frozen=True)
class _Where:
    """Where a value came from: a file (and for overrides, the ``--set`` text)."""

    file: str
    overridden: frozenset[str] = field(default_factory=frozenset)

    def name(self, key: str) -> str:
        return "--set" if key in self.overridden else self.file


def _fail(where: _Where, key: str, message: str, value: Any = _REQUIRED) -> ConfigError:
    got = "" if value is _REQUIRED else f", got {value!r}"
    return ConfigError(f"{where.name(key)}: {key or '<top level>'}: {message}{got}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def validate(data: Any, schema: Section, *, file: str | os.PathLike = "<config>", prefix: str = "",
             _where: _Where | None = None) -> dict[str, Any]:
    """Validate ``data`` against ``schema`` and return a new dict with every default filled in.

    Parameters
    ----------
    data : mapping
        The parsed table (e.g. from :func:`read_toml`).
    schema : Section
        What it must hold.
    file : str or os.PathLike, default "<config>"
        Where ``data`` came from, for the messages.
    prefix : str, default ""
        Dotted key path of ``data`` within a larger config (``"reliability"``), for the messages.

    Returns
    -------
    dict
        A new dict: every declared key, given or default; nested sections validated alike.

    Raises
    ------
    ConfigError
        An unknown key, a missing required key, a wrong type, an out-of-range value or a failed ``check``;
        the message names the file, the dotted key path and the value.

    Examples
    --------
    >>> schema = Section({"seed": Field(int, 0, min=0), "name": Field(str)})
    >>> validate({"name": "demo"}, schema, file="x.toml")
    {'seed': 0, 'name': 'demo'}
    >>> validate({"name": "demo", "sede": 1}, schema, file="x.toml")
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: x.toml: sede: unknown key (known: name, seed), got 1
    """
    where = _where or _Where(str(file))
    return _section(data, schema, where, prefix)


def _section(data: Any, schema: Section, where: _Where, prefix: str) -> dict[str, Any]:
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


def _value(value: Any, spec: Field, where: _Where, path: str) -> Any:
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
    """Parse a TOML file; a missing file or a syntax error raises ConfigError naming the file.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file.

    Returns
    -------
    dict
        The parsed (not validated) table.

    Raises
    ------
    ConfigError
        The file is missing, is a directory or is not valid TOML.

    Examples
    --------
    >>> read_toml("no/such/experiment.toml")
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: no/such/experiment.toml: file not found
    """
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

    Parameters
    ----------
    text : str
        One ``--set`` argument.

    Returns
    -------
    (str, object)
        The dotted key and the value.

    Raises
    ------
    ConfigError
        ``text`` is not ``dotted.key=value``.

    Examples
    --------
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
    """Return a copy of ``data`` with each ``dotted.key=value`` set, and the set of overridden key paths.

    Parameters
    ----------
    data : mapping
        A parsed (not yet validated) config.
    overrides : sequence of str
        ``dotted.key=value`` texts (:func:`parse_override`); missing tables on the way are created.

    Returns
    -------
    (dict, frozenset of str)
        The new config (``data`` is not modified) and the overridden key paths, so that a later
        validation error blames ``--set`` rather than the file.

    Raises
    ------
    ConfigError
        A text is not ``dotted.key=value``, or a key on the path is not a table.

    Examples
    --------
    >>> apply_overrides({"engine": {"workers": 2}}, ["engine.workers=4", "experiment.name=demo"])
    ({'engine': {'workers': 4}, 'experiment': {'name': 'demo'}}, frozenset({...}))
    """
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
    """Read a TOML file, apply overrides and validate; errors name the file (or ``--set``) and key.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file.
    schema : Section
        What it must hold.
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts applied before validation (:func:`apply_overrides`).
    prefix : str, default ""
        Dotted key path of the file's content within a larger config, for the messages.

    Returns
    -------
    dict
        The validated config with every default filled in (:func:`validate`).

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or its content (with the overrides) does not validate.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> schema = Section({"seed": Field(int, 0, min=0)})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "run.toml"
    ...     _ = path.write_text("seed = 3")
    ...     load(path, schema), load(path, schema, ["seed=5"])
    ({'seed': 3}, {'seed': 5})
    """
    raw, overridden = apply_overrides(read_toml(path), overrides)
    return _section(raw, schema, _Where(str(path), overridden), prefix)
