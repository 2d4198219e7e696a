"""The examples harmony ships: scanner profiles, cohort specs, experiments, designs and pyradiomics params.

They are the repository's ``phantoms/`` and ``experiments/`` folders, installed with the package, so that a
built-in name works from any directory: ``load_scanner("ct_sharp_1mm")``, ``harmony run quickstart``,
``harmony phantoms cohort_demo``. ``harmony examples copy DIR`` copies them out for editing.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from harmony.core.errors import ConfigError

__all__ = ["KINDS", "examples_dir", "builtin_names", "builtin_path", "resolve", "copy_examples"]

#: Kind of example -> (its folder inside the examples, its file suffix).
KINDS: dict[str, tuple[str, str]] = {
    "experiment": ("experiments", ".toml"),
    "design": ("experiments/designs", ".toml"),
    "params": ("experiments/params", ".yaml"),
    "cohort": ("phantoms", ".toml"),
    "scanner": ("phantoms/scanners", ".toml"),
}


def examples_dir() -> Path:
    """The installed examples: a folder holding ``experiments/`` and ``phantoms/``."""
    return Path(str(resources.files("harmony").joinpath("examples")))


def _check_kind(kind: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return KINDS[kind]


def builtin_names(kind: str) -> list[str]:
    """The names of the shipped examples of ``kind``.

    >>> builtin_names("scanner")
    ['ct_sharp_1mm', 'ct_smooth_5mm', 'ct_standard_2mm_offset', 'mr_bias_field']
    """
    folder, suffix = _check_kind(kind)
    return sorted(p.name[: -len(suffix)] for p in (examples_dir() / folder).glob(f"*{suffix}"))


def builtin_path(kind: str, name: str) -> Path:
    """The file of the shipped example ``name``; an unknown name raises ConfigError listing the known ones.

    >>> builtin_path("experiment", "quickstart").name
    'quickstart.toml'
    """
    folder, suffix = _check_kind(kind)
    path = examples_dir() / folder / f"{name}{suffix}"
    if not path.is_file():
        raise ConfigError(f"no built-in {kind} {name!r} (built-in: {', '.join(builtin_names(kind)) or 'none'})")
    return path


def is_bare_name(ref: str | os.PathLike) -> bool:
    """A name without a folder or a file suffix: ``ct_sharp_1mm``, not ``ct_sharp_1mm.toml`` or ``./x``."""
    text = os.fspath(ref)
    return bool(text) and not any(c in text for c in "/\\") and "." not in text


def resolve(ref: str | os.PathLike, kind: str) -> Path:
    """A path as given when it names a file, else the built-in example of that name.

    A path that exists always wins, so a user's file called like a built-in is never shadowed. A bare name
    that is neither a file nor a built-in raises ConfigError naming both.
    """
    path = Path(ref)
    if path.exists() or not is_bare_name(ref):
        return path
    return builtin_path(kind, os.fspath(ref))


def copy_examples(destination: str | os.PathLike) -> list[Path]:
    """Copy the shipped ``experiments/`` and ``phantoms/`` into ``destination``; return the files written.

    Existing files are never overwritten: a file already there raises ConfigError before anything is copied.
    """
    destination = Path(destination)
    source = examples_dir()
    files = sorted(p for top in ("experiments", "phantoms") for p in (source / top).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    targets = [destination / p.relative_to(source) for p in files]
    clash = next((t for t in targets if t.exists()), None)
    if clash is not None:
        raise ConfigError(f"{clash}: already exists; copy the examples into an empty folder")
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"{destination}: is a file, expected a folder for the examples")
    for file, target in zip(files, targets):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return targets
