"""pyradiomics parameter files and dicts: reading, merging, canonical form, the mask label."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harmony.core.errors import ConfigError

__all__ = ["PARAM_SECTIONS", "load_params", "merge_params", "canonical_params", "resolve_label"]

#: The top-level keys of a pyradiomics parameter file.
PARAM_SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting")


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pyradiomics parameter file (.yaml/.yml with ``safe_load``, .toml or .json) into a dict.

    The content is checked by pyradiomics' own schema when an extractor is made
    (:func:`~harmony.extraction.adapter.make_extractor`), not here.

    Parameters
    ----------
    path : str or os.PathLike
        The parameter file.

    Returns
    -------
    dict
        The parameters (``{}`` for an empty file).

    Raises
    ------
    ConfigError
        The file is missing, of an unknown type, cannot be parsed, or is not a mapping.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "params.json"
    ...     _ = path.write_text('{"setting": {"binWidth": 25}, "imageType": {"Original": {}}}')
    ...     load_params(path)
    {'setting': {'binWidth': 25}, 'imageType': {'Original': {}}}
    >>> load_params("no/such/params.yaml")
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: no/such/params.yaml: parameter file not found
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameter file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a parameter file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text parameter file ({exc.reason})") from None
    try:
        if suffix in (".yaml", ".yml"):
            params = yaml.safe_load(text)
        elif suffix == ".toml":
            params = tomllib.loads(text)
        elif suffix == ".json":
            params = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown parameter file type {suffix!r} (use .yaml, .yml, .toml or .json)")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse parameters ({exc})") from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: parameters must be a mapping, got {type(params).__name__}")
    return params


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two parameter dicts section by section (``override`` wins).

    Parameters
    ----------
    base : mapping
        pyradiomics parameters.
    override : mapping
        Parameters whose sections update ``base``'s key by key (a non-mapping value replaces).

    Returns
    -------
    dict
        A new dict; neither input is modified.

    Examples
    --------
    >>> merge_params({"setting": {"binWidth": 25, "label": 1}}, {"setting": {"binWidth": 10}})
    {'setting': {'binWidth': 10, 'label': 1}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def canonical_params(obj: Any) -> str:
    """Key-sorted JSON of a parameter structure (tuples become lists), usable as a cache key.

    Parameters
    ----------
    obj : object
        Parameters (anything not JSON becomes its ``str``).

    Returns
    -------
    str

    Examples
    --------
    >>> canonical_params({"b": (1, 2), "a": None})
    '{"a":null,"b":[1,2]}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def resolve_label(params: Mapping[str, Any], label: int | None) -> int:
    """The mask label: ``label`` if given, else the parameters' ``setting.label``, else 1.

    Parameters
    ----------
    params : mapping
        pyradiomics parameters.
    label : int or None
        An explicit label.

    Returns
    -------
    int

    Examples
    --------
    >>> resolve_label({"setting": {"label": 2}}, None), resolve_label({"setting": {"label": 2}}, 3), resolve_label({}, None)
    (2, 3, 1)
    """
    return int(label if label is not None else (params.get("setting") or {}).get("label", 1))
