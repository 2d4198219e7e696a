"""Writing and reading files: atomic writes, JSON, validated Parquet tables, content hashes and digests."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmony.core.errors import SchemaError
from harmony.core.schema import TableSpec


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


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, cached per (path, mtime, size) in this process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
