"""Provenance: the manifest every command writes (versions, including the pyradiomics distribution, seeds, times)."""

from __future__ import annotations

import datetime as _dt
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

MANIFEST_NAME = "manifest.json"
#: Key of a manifest stage record that says why the stage did not run.
NOT_RUN = "not_run"


#: Distributions whose versions every manifest records (the pyradiomics one is found at run time).
_RECORDED_DISTRIBUTIONS = (
    "harmony-radiomics", "numpy", "scipy", "SimpleITK", "pandas", "pyarrow",
    "pingouin", "neuroCombat", "scikit-learn", "scikit-image", "PyWavelets",
)


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
    """The provenance record docs/design.md asks of every run directory."""
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
