"""Provenance: the manifest every command writes (versions, including the pyradiomics distribution, seeds, times)."""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harmony.core.files import stable_hash, write_json

__all__ = ["MANIFEST_NAME", "NOT_RUN", "pyradiomics_distribution", "versions", "now_utc", "build_manifest",
           "write_manifest"]

#: File name of the manifest in a run or output directory.
MANIFEST_NAME = "manifest.json"
#: Key of a manifest stage record that says why the stage did not run.
NOT_RUN = "not_run"
#: Distributions whose versions every manifest records (the pyradiomics one is found at run time).
_RECORDED_DISTRIBUTIONS = (
    "harmony-radiomics", "numpy", "scipy", "SimpleITK", "pandas", "pyarrow", "scikit-learn", "scikit-image",
    "PyWavelets", "matplotlib",
)
#: The names pyradiomics is packaged under, tried before a scan of every installed distribution.
_PYRADIOMICS_DISTRIBUTIONS = ("pyradiomics-bhklab", "pyradiomics")


def pyradiomics_distribution() -> tuple[str, str]:
    """The distribution name and version of whatever installed package provides the ``radiomics`` module.

    pyradiomics is packaged under several names (``pyradiomics``, ``pyradiomics-bhklab``); the manifest
    records which one computed the features.

    Returns
    -------
    (str, str)
        ``(distribution, version)``, or ``("unknown", "unknown")`` when no installed distribution provides it.

    Examples
    --------
    >>> name, version = pyradiomics_distribution()
    >>> name.startswith("pyradiomics")
    True
    """
    return _radiomics_distribution()


@functools.cache  # the radiomics module a process imported does not change under it
def _radiomics_distribution() -> tuple[str, str]:
    for name in _PYRADIOMICS_DISTRIBUTIONS:  # the known names first: scanning every distribution takes 0.2-0.6 s
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if _provides_radiomics(dist):
            return name, dist.version
    for name in metadata.packages_distributions().get("radiomics", []):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown", "unknown"


def _provides_radiomics(dist: metadata.Distribution) -> bool:
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return "radiomics" in top_level.split()
    return any(f.parts[:1] == ("radiomics",) for f in dist.files or ())


def versions() -> dict[str, str]:
    """Versions of Python, harmony and every library whose behaviour can change a result.

    Returns
    -------
    dict of str to str
        ``python``, ``harmony-radiomics``, numpy, scipy, SimpleITK, pandas, pyarrow, pingouin, neuroCombat,
        scikit-learn, scikit-image, PyWavelets (``"not installed"`` when absent), and
        ``pyradiomics_distribution`` and ``pyradiomics`` (see :func:`pyradiomics_distribution`).

    Examples
    --------
    >>> found = versions()
    >>> sorted(k for k in found if k.startswith("py"))[:3]
    ['pyarrow', 'pyradiomics', 'pyradiomics_distribution']
    """
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
    """The current UTC time as ISO 8601 text, to the second (the manifests' timestamps).

    Returns
    -------
    str
        E.g. ``"2024-05-01T12:00:00+00:00"``.

    Examples
    --------
    >>> now_utc().endswith("+00:00")
    True
    """
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
    """The provenance record docs/design.md asks of every run directory.

    Parameters
    ----------
    command : str
        The command that ran (``"run"``, ``"extract"``, ...).
    config : mapping, optional
        The resolved configuration; its hash is recorded as ``config_hash``.
    seeds : mapping, optional
        Every seed the run used.
    started : str
        Start time (:func:`now_utc`).
    finished : str, optional
        End time; default now.
    tasks : mapping of str to int, optional
        Task counts (``total``, ``done``, ``failed``, ``resumed``).
    **extra
        Further top-level entries (stage records, diagnostics, ...).

    Returns
    -------
    dict
        ``command, argv, config, config_hash, seeds, versions, platform, started, finished, tasks`` and the
        ``extra`` entries; non-finite floats become ``None`` so that it is valid JSON.

    Examples
    --------
    >>> manifest = build_manifest(command="demo", config={"seed": 1, "noise": float("nan")},
    ...                           started="2024-05-01T12:00:00+00:00")
    >>> manifest["config"], len(manifest["config_hash"]), "pyradiomics" in manifest["versions"]
    ({'seed': 1, 'noise': None}, 64, True)
    """
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
    """Write ``manifest`` as ``<directory>/manifest.json``, atomically.

    Parameters
    ----------
    directory : str or os.PathLike
        The run or output directory (created when absent).
    manifest : mapping
        What :func:`build_manifest` returns.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     write_manifest(out, {"command": "demo"}).name
    'manifest.json'
    """
    return write_json(Path(directory) / MANIFEST_NAME, manifest)
