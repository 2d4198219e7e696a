"""The cache of volumes converted from DICOM, keyed by the content digest of their source files.

A converted series or mask is written once as NRRD (with a JSON sidecar holding its source UIDs) under
:func:`cache_dir`: ``$HARMONY_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/harmony`` (``~/.cache/harmony``),
in its ``dicom/`` folder. The key hashes the bytes of every source file, the ROI asked for and
:data:`CONVERTER_VERSION`, so a changed file, another ROI or a changed conversion rule makes a new entry
and a renamed or moved folder finds its old one. Entries are written atomically; deleting the folder is
always safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from harmony.core.files import (
    atomic_write,
    file_digest,
    read_json,
    stable_hash,
    write_json,
)

__all__ = ["CACHE_ENV", "CONVERTER_VERSION", "cache_dir", "cached_volume", "content_digest", "source_digest"]

#: Environment variable naming the cache folder.
CACHE_ENV = "HARMONY_CACHE_DIR"
#: Changes whenever a conversion rule changes, so older entries are not reused.
CONVERTER_VERSION = 1


def cache_dir() -> Path:
    """The folder converted DICOM volumes are cached in (see the module's docstring).

    Returns
    -------
    pathlib.Path
        ``<cache>/dicom``; created on first write.

    Examples
    --------
    >>> os.environ[CACHE_ENV] = "/tmp/harmony-cache"
    >>> str(cache_dir())
    '/tmp/harmony-cache/dicom'
    >>> del os.environ[CACHE_ENV]
    """
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harmony"
    return Path(root) / "dicom"


def content_digest(paths: Iterable[str | os.PathLike], **key: Any) -> str:
    """A digest of the files' bytes (order-independent) and of ``key``.

    Parameters
    ----------
    paths : iterable of path
        The source files.
    **key
        Anything else the converted volume depends on (the ROI, the kind of conversion).

    Returns
    -------
    str
        32 hex digits.
    """
    digests = sorted(file_digest(p) for p in paths)
    return stable_hash({"files": digests, "key": key, "version": CONVERTER_VERSION}, length=32)


def source_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, or :func:`content_digest` of a folder's files (a DICOM series): what a run's cache checks.

    Parameters
    ----------
    path : str or os.PathLike
        A file or a folder.

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (Path(folder) / "1.dcm").write_bytes(b"slice")
    ...     len(source_digest(folder)), len(source_digest(Path(folder) / "1.dcm"))
    (32, 64)
    """
    path = Path(path)
    if path.is_dir():
        return content_digest(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
    return file_digest(path)


def _write_nrrd(image: sitk.Image, path: Path) -> None:
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("NrrdImageIO")  # the temporary file's name does not end in .nrrd
    writer.SetFileName(str(path))
    writer.UseCompressionOn()
    writer.Execute(image)


def cached_volume(digest: str, make: Callable[[], tuple[sitk.Image, dict[str, Any]]]) -> tuple[Path, dict[str, Any]]:
    """The cached volume of ``digest``, made (and written) by ``make`` when absent.

    Parameters
    ----------
    digest : str
        :func:`content_digest` of the sources.
    make : callable
        Returns the volume and its provenance (JSON-serialisable).

    Returns
    -------
    (pathlib.Path, dict)
        The NRRD file and the provenance.
    """
    base = cache_dir() / digest[:2]
    volume, sidecar = base / f"{digest}.nrrd", base / f"{digest}.json"
    if volume.is_file() and sidecar.is_file():
        return volume, read_json(sidecar)
    image, provenance = make()
    base.mkdir(parents=True, exist_ok=True)
    atomic_write(volume, lambda tmp: _write_nrrd(image, tmp))
    write_json(sidecar, provenance)
    return volume, provenance
