"""Writing and reading files: output folders, names from data, atomic writes, JSON, validated Parquet tables,
content hashes and digests."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony.core.errors import HarmonyError, SchemaError
from harmony.core.schema import TableSpec

if TYPE_CHECKING:  # pandas is imported where it is used, so `harmony validate` does not load it
    import pandas as pd

__all__ = ["PathError", "check_output_dir", "ensure_output_dir", "path_component", "remove_temp_files",
           "atomic_write", "write_text", "to_json", "canonical_json", "stable_hash", "write_json", "read_json",
           "write_table", "read_table", "file_digest"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class PathError(HarmonyError):
    """A path that cannot be used: an output folder that is a file or not writable, a name that would leave it."""


#: Longest file or folder name harmony writes when the file system does not say (most allow 255 bytes).
_NAME_MAX = 255


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or not reported
        return _NAME_MAX


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise :class:`PathError` unless ``path`` is a folder harmony can create or write into; nothing is created.

    Checked: no component is longer than the file system allows, ``path`` is not an existing file and does
    not lie under one, and its nearest existing folder is writable.

    Parameters
    ----------
    path : str or os.PathLike
        The folder (``--out``).
    what : str, default "output folder"
        What it is, for the message (``"--out"``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    PathError
        Naming the path and what is wrong with it.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     note = write_text(Path(folder) / "note.txt", "x")
    ...     check_output_dir(note / "out", "--out")
    Traceback (most recent call last):
    ...
    harmony.core.files.PathError: --out .../note.txt/out: lies under the file .../note.txt, not a folder
    """
    path = Path(path)
    existing = path
    while not os.path.exists(existing) and existing != existing.parent:  # os.path: False for a name too long
        if os.path.islink(existing):  # a dangling link: mkdir cannot make it a folder
            raise PathError(f"{what} {path}: {existing} is a broken symbolic link")
        existing = existing.parent
    limit = _name_max(existing if existing.is_dir() else existing.parent)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise PathError(f"{what} {path}: the name {part[:40]!r}... is longer than the file system allows "
                            f"({len(os.fsencode(part))} bytes, at most {limit})")
    if existing == path and not path.is_dir():
        raise PathError(f"{what} {path}: is an existing file, not a folder")
    if not existing.is_dir():
        raise PathError(f"{what} {path}: lies under the file {existing}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{what} {path}: {existing} is not writable")
    return path


def ensure_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check an output folder (:func:`check_output_dir`) and create it.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    what : str, default "output folder"
        What it is, for the message.

    Returns
    -------
    pathlib.Path
        ``path``, now an existing folder.

    Raises
    ------
    PathError
        See :func:`check_output_dir`; or the folder cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     ensure_output_dir(Path(folder) / "a" / "b").is_dir()
    True
    """
    path = check_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"{what} {path}: cannot create it ({exc.strerror or exc})") from None
    return path


#: The characters a name from data cannot hold: path separators, NUL and other control characters.
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def path_component(name: object, what: str = "name", *, suffix: str = "") -> str:
    """``name`` (from data: a case id, site, prefix, variant id) as one file or folder name; refused otherwise.

    The rule, for every path harmony builds from data: the name is used as written when it is a single
    plain path component -- not empty, not ``.`` or ``..``, without ``/``, ``\\``, NUL or another control
    character, and with ``suffix`` at most 255 bytes in UTF-8. Anything else is refused (not rewritten,
    so two different names never share a file): a name from data never decides a path outside the output
    folder.

    Parameters
    ----------
    name : object
        The name (converted with ``str``).
    what : str, default "name"
        What it is, for the message (``"case_id"``).
    suffix : str, default ""
        What the file name adds to it (``"_image.nrrd"``), counted in the length.

    Returns
    -------
    str
        ``str(name)``.

    Raises
    ------
    PathError
        The name could leave the folder, or is too long.

    Examples
    --------
    >>> path_component("p001", "case_id")
    'p001'
    >>> path_component("../../x", "case_id")
    Traceback (most recent call last):
    ...
    harmony.core.files.PathError: case_id '../../x': cannot be a file name (it holds '/'); ...
    """
    text = str(name)
    if text in ("", ".", ".."):
        raise PathError(f"{what} {text!r}: cannot be a file name; use a name with letters or digits")
    bad = _UNSAFE.search(text)
    if bad:
        raise PathError(f"{what} {text!r}: cannot be a file name (it holds {bad.group()!r}); names from data "
                        "must be single path components, without path separators or control characters")
    if len((text + suffix).encode("utf-8")) > _NAME_MAX:
        raise PathError(f"{what} {text[:40]!r}...: too long for a file name "
                        f"({len((text + suffix).encode('utf-8'))} bytes with {suffix!r}, at most {_NAME_MAX})")
    return text


#: The temporary files of :func:`atomic_write`: ``.<name>.<8 random characters>.tmp``.
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_temp_files(directory: str | os.PathLike, depth: int = 3) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``directory`` (``depth`` levels down).

    Call it only while holding the directory (:class:`harmony.core.lock.RunLock` does, on entering):
    nobody else is writing there then, so every such file is a dead writer's.

    Parameters
    ----------
    directory : str or os.PathLike
        The folder.
    depth : int, default 3
        Folder levels searched below it (a run directory's task files are two levels down).

    Returns
    -------
    list of pathlib.Path
        The files deleted.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = write_text(Path(folder) / "sub" / ".manifest.json.k2x9_q0a.tmp", "half")
    ...     [p.name for p in remove_temp_files(folder)]
    ['.manifest.json.k2x9_q0a.tmp']
    """
    removed = []
    folders = [Path(directory)]
    for _ in range(depth + 1):
        below = []
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    below.append(Path(entry.path))
                elif _TEMP_FILE.match(entry.name):
                    Path(entry.path).unlink(missing_ok=True)
                    removed.append(Path(entry.path))
        folders = below
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, sync: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    A reader (or a resumed run) sees the old file or the complete new one, never half of it. The file gets
    the permissions ``open()`` would give it; on any error the temporary file is removed.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (its folder is created when absent).
    write : callable
        Called with the temporary file's path; writes the content there.
    sync : bool, default True
        Flush the file to the disk before the rename, so that it survives a power loss. A caller that records
        the file's digest elsewhere and checks it before trusting the file (the task store) may skip it.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     out = atomic_write(Path(folder) / "a" / "note.txt", lambda tmp: tmp.write_text("done"))
    ...     out.read_text(), sorted(p.name for p in out.parent.iterdir())
    ('done', ['note.txt'])
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a folder that is a file, not writable, a name too long: the user's path
        raise PathError(f"{path}: cannot write it ({exc.strerror or exc})") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        if sync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically (:func:`atomic_write`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    text : str
        Its content.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_text(Path(folder) / "x.csv", "a,b").read_text()
    'a,b'
    """
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    import numpy as np
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
    """JSON text with numpy scalars and arrays converted; NaN is refused (it is not JSON).

    Paths and dates become text, sets sorted lists.

    Parameters
    ----------
    obj : object
        JSON-able data, possibly holding numpy values.
    indent : int or None, default 2
        Indentation; ``None`` writes one line.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        ``obj`` holds a NaN or an infinity.
    TypeError
        ``obj`` holds something JSON cannot represent.

    Examples
    --------
    >>> import numpy as np
    >>> to_json({"n": np.int64(3), "x": np.array([0.5, 1.0])}, indent=None)
    '{"n": 3, "x": [0.5, 1.0]}'
    """
    return json.dumps(obj, indent=indent, default=_json_default, allow_nan=False, sort_keys=False)


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal objects give equal text, whatever their key order.

    Parameters
    ----------
    obj : object
        JSON-able data (numpy values converted as by :func:`to_json`).

    Returns
    -------
    str

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1.5, "x"]})
    '{"a":[1.5,"x"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of ``canonical_json(obj)``, stable across processes, machines and versions.

    Parameters
    ----------
    obj : object
        JSON-able data.
    length : int, default 16
        Number of hex digits kept of the SHA-256 digest (at most 64).

    Returns
    -------
    str

    Examples
    --------
    >>> stable_hash({"b": 1, "a": [1.5, "x"]}) == stable_hash({"a": [1.5, "x"], "b": 1})
    True
    >>> len(stable_hash([1, 2], length=64))
    64
    """
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (:func:`to_json`) to ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    obj : object
        JSON-able data; NaN is refused.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     read_json(write_json(Path(folder) / "m.json", {"seed": np.int64(7)}))
    {'seed': 7}
    """
    return write_text(path, to_json(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    object
        The parsed data.

    Raises
    ------
    SchemaError
        The file does not exist or is not valid JSON.

    Examples
    --------
    >>> read_json("no/such/manifest.json")
    Traceback (most recent call last):
    ...
    harmony.core.errors.SchemaError: no/such/manifest.json: file not found
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SchemaError(f"{path}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None


def write_table(df: pd.DataFrame, path: str | os.PathLike, spec: TableSpec) -> Path:
    """Validate ``df`` against ``spec`` and write it as Parquet, atomically.

    Parameters
    ----------
    df : DataFrame
        The table.
    path : str or os.PathLike
        The Parquet file to write.
    spec : TableSpec
        Its contract (e.g. :data:`harmony.core.schema.FEATURES`).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    SchemaError
        ``df`` does not follow ``spec``; nothing is written.

    Examples
    --------
    >>> import tempfile
    >>> from harmony.core import schema
    >>> import pandas as pd
    >>> variants = pd.DataFrame({"variant_id": ["original"], "kind": ["original"], "params": ["[]"], "seed": [0]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_table(variants, Path(folder) / "variants.parquet", schema.VARIANTS)
    ...     read_table(path, schema.VARIANTS).equals(schema.VARIANTS.validate(variants))
    True
    """
    checked = spec.validate(df, source=str(path))
    return atomic_write(path, lambda tmp: checked.to_parquet(tmp, index=False))


def read_table(path: str | os.PathLike, spec: TableSpec, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet (or CSV) table and validate it against ``spec``; errors name the file.

    Parameters
    ----------
    path : str or os.PathLike
        A Parquet file, or a ``.csv`` file.
    spec : TableSpec
        The table's contract (e.g. :data:`harmony.core.schema.FEATURES`).
    columns : list of str, optional
        Read only these columns of ``spec`` (the others are not loaded) and check them only.

    Returns
    -------
    DataFrame
        The validated table (:meth:`TableSpec.validate`).

    Raises
    ------
    SchemaError
        The file is absent or unreadable, or the table does not follow ``spec``.

    Examples
    --------
    >>> from harmony.core import schema
    >>> read_table("no/such/features.parquet", schema.FEATURES)
    Traceback (most recent call last):
    ...
    harmony.core.errors.SchemaError: no/such/features.parquet: features table not found
    """
    import pandas as pd
    path = Path(path)
    if path.is_dir():
        raise SchemaError(f"{path}: is a directory, expected the {spec.name} table (a Parquet or CSV file)")
    if not path.is_file():
        raise SchemaError(f"{path}: {spec.name} table not found")
    if columns is not None:
        spec = spec.subset(columns)
        columns = spec.names
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, usecols=lambda c: columns is None or c in columns)
        else:
            if columns is not None:  # a column the file lacks is named by the check below, not by pyarrow
                import pyarrow.parquet as pq
                present = set(pq.read_schema(path).names)
                columns = [c for c in columns if c in present]
            df = pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise SchemaError(f"{path}: cannot read the {spec.name} table ({type(exc).__name__}: {exc})") from None
    return spec.validate(df, source=str(path))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, cached per (path, mtime, size) in this process.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    FileNotFoundError
        The file does not exist.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     file_digest(write_text(Path(folder) / "x.txt", "abc"))[:16]
    'ba7816bf8f01cfea'
    """
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
