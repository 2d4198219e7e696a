"""Atomic writes, Parquet tables with their contract, JSON manifests and the versions they record."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmony.errors import SchemaError
from harmony.schema import TableSpec

MANIFEST_NAME = "manifest.json"
#: Distributions whose versions every manifest records (the pyradiomics one is found at run time).
_RECORDED_DISTRIBUTIONS = (
    "harmony-radiomics", "numpy", "scipy", "SimpleITK", "pandas", "pyarrow",
    "pingouin", "neuroCombat", "scikit-learn", "scikit-image", "PyWavelets",
)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    A reader (or a resumed run) sees the old file or the complete new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, _dt.datetime, _dt.date)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable: {obj!r}")


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """JSON text with numpy scalars and arrays converted; NaN is refused (it is not JSON)."""
    return json.dumps(obj, indent=indent, default=_json_default, allow_nan=False, sort_keys=False)


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal objects give equal text, whatever their key order."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of ``canonical_json(obj)``, stable across processes, machines and versions.

    >>> stable_hash({"b": 1, "a": [1.5, "x"]}) == stable_hash({"a": [1.5, "x"], "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, to_json(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None


def write_table(df: pd.DataFrame, path: str | os.PathLike, spec: TableSpec) -> Path:
    """Validate ``df`` against ``spec`` and write it as Parquet, atomically."""
    checked = spec.validate(df, source=str(path))
    return atomic_write(path, lambda tmp: checked.to_parquet(tmp, index=False))


def read_table(path: str | os.PathLike, spec: TableSpec) -> pd.DataFrame:
    """Read a Parquet (or CSV) table and validate it against ``spec``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: {spec.name} table not found")
    try:
        df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise SchemaError(f"{path}: cannot read the {spec.name} table ({type(exc).__name__}: {exc})") from None
    return spec.validate(df, source=str(path))


def pyradiomics_distribution() -> tuple[str, str]:
    """(distribution name, version) of whatever installed package provides the ``radiomics`` module."""
    names = metadata.packages_distributions().get("radiomics", [])
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown", "unknown"


def versions() -> dict[str, str]:
    """Versions of Python, harmony and every library whose behaviour can change a result."""
    found: dict[str, str] = {"python": platform.python_version()}
    for dist in _RECORDED_DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    name, ver = pyradiomics_distribution()
    found["pyradiomics_distribution"] = name
    found["pyradiomics"] = ver
    return found


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_manifest(
    *,
    command: str,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    started: str,
    finished: str | None = None,
    tasks: Mapping[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record DESIGN.md asks of every run directory."""
    config = _finite(dict(config or {}))
    manifest: dict[str, Any] = {
        "command": command,
        "argv": sys.argv,
        "config": config,
        "config_hash": stable_hash(config, length=64),
        "seeds": dict(seeds or {}),
        "versions": versions(),
        "platform": platform.platform(),
        "started": started,
        "finished": finished or now_utc(),
        "tasks": dict(tasks or {}),
    }
    manifest.update(extra)
    return _finite(manifest)


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None so the manifest stays valid JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(float(obj)):
        return None
    return obj


def write_manifest(directory: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    return write_json(Path(directory) / MANIFEST_NAME, manifest)
