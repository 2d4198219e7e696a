"""The examples harmony ships: scanner profiles, cohort specs, experiments, designs and pyradiomics params.

They are the repository's ``phantoms/`` and ``experiments/`` folders, installed with the package, so that a
built-in name works from any directory: ``load_scanner("ct_sharp_1mm")``, ``harmony run quickstart``,
``harmony phantoms cohort_demo``. ``harmony examples copy DIR`` copies them out for editing.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path

from harmony.core.config import read_toml
from harmony.core.errors import ConfigError

__all__ = ["KINDS", "examples_dir", "builtin_names", "builtin_path", "is_bare_name", "resolve", "describe",
           "catalog", "copy_examples"]

#: The top-level folders of the examples, as in the repository.
TOPS = ("experiments", "phantoms")
#: Longest description :func:`describe` returns.
DESCRIPTION_WIDTH = 100

#: Kind of example -> (its folders inside the examples, its file suffix). Every shipped file is of one kind,
#: and a name is unique within its kind.
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "experiment": (("experiments",), ".toml"),
    "design": (("experiments/designs",), ".toml"),
    "params": (("experiments/params", "phantoms"), ".yaml"),
    "cohort": (("phantoms",), ".toml"),
    "scanner": (("phantoms/scanners",), ".toml"),
}


def examples_dir() -> Path:
    """The installed examples: a folder holding ``experiments/`` and ``phantoms/``.

    Returns
    -------
    Path
        The ``examples`` folder inside the installed package.
    """
    return Path(str(resources.files("harmony").joinpath("examples")))


def _files(kind: str) -> dict[str, Path]:
    """The shipped files of ``kind`` by name."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    folders, suffix = KINDS[kind]
    root = examples_dir()
    return {p.name[: -len(suffix)]: p for folder in folders
            for p in sorted((root / folder).glob(f"*{suffix}")) if p.is_file()}


def builtin_names(kind: str) -> list[str]:
    """The names of the shipped examples of ``kind``.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS` (``"experiment"``, ``"design"``, ``"params"``, ``"cohort"``, ``"scanner"``).

    Returns
    -------
    list of str
        The names, sorted.

    Raises
    ------
    ValueError
        When ``kind`` is not one of :data:`KINDS`.

    Examples
    --------
    >>> builtin_names("scanner")
    ['ct_sharp_1mm', 'ct_smooth_5mm', 'ct_standard_2mm_offset', 'mr_bias_field']
    """
    return sorted(_files(kind))


def builtin_path(kind: str, name: str) -> Path:
    """The file of the shipped example ``name`` of ``kind``.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    name : str
        The example's name: its file name without the suffix.

    Returns
    -------
    Path
        The shipped file.

    Raises
    ------
    ConfigError
        When there is no built-in ``name`` of that kind; the message lists the known ones.
    ValueError
        When ``kind`` is not one of :data:`KINDS`.

    Examples
    --------
    >>> builtin_path("experiment", "quickstart").name
    'quickstart.toml'
    """
    files = _files(kind)
    if name not in files:
        raise ConfigError(f"no built-in {kind} {name!r} (built-in: {', '.join(sorted(files)) or 'none'})")
    return files[name]


def is_bare_name(ref: str | os.PathLike) -> bool:
    """Whether ``ref`` is a name without a folder or a file suffix.

    Parameters
    ----------
    ref : str or path-like
        What the user gave.

    Returns
    -------
    bool
        True for ``ct_sharp_1mm``; False for ``ct_sharp_1mm.toml``, ``./x`` or an empty string.

    Examples
    --------
    >>> is_bare_name("ct_sharp_1mm"), is_bare_name("ct_sharp_1mm.toml"), is_bare_name("./x")
    (True, False, False)
    """
    text = os.fspath(ref)
    return bool(text) and not any(c in text for c in "/\\") and "." not in text


def resolve(ref: str | os.PathLike, kind: str) -> Path:
    """A path as given when it names a file, else the built-in example of that name.

    A file that exists always wins, so a user's file called like a built-in is never shadowed; a folder does
    not (``harmony run quickstart --out quickstart`` must work twice). A bare name that is neither a file nor
    a built-in raises ConfigError listing the built-ins.

    Parameters
    ----------
    ref : str or path-like
        A path, or the bare name of a built-in example.
    kind : str
        The kind of built-in example ``ref`` may name (one of :data:`KINDS`).

    Returns
    -------
    Path
        ``ref`` as a path, or the built-in file.

    Raises
    ------
    ConfigError
        When ``ref`` is a bare name that is neither a file, a folder nor a built-in of ``kind``.

    Examples
    --------
    >>> resolve("quickstart", "experiment") == builtin_path("experiment", "quickstart")
    True
    >>> resolve("my/quickstart.toml", "experiment")
    PosixPath('my/quickstart.toml')
    """
    path = Path(ref)
    if path.is_file() or not is_bare_name(ref):
        return path
    try:
        return builtin_path(kind, os.fspath(ref))
    except ConfigError:
        if path.exists():  # a folder: the reader names it
            return path
        raise


def _leading_comment(path: Path) -> str:
    """The comment block a file opens with, its lines joined."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text.startswith("#") or not text.lstrip("#").strip():
            break
        lines.append(text.lstrip("#").strip())
    return " ".join(lines)


def describe(path: str | os.PathLike) -> str:
    """One line about an example file.

    Its ``description`` (top-level, or an experiment's), else the first sentence of the comment it opens
    with; at most :data:`DESCRIPTION_WIDTH` characters.

    Parameters
    ----------
    path : str or path-like
        The example file (TOML or YAML).

    Returns
    -------
    str
        The first sentence, shortened with ``...`` when longer than :data:`DESCRIPTION_WIDTH`; empty when
        the file has neither a description nor an opening comment.

    Examples
    --------
    >>> describe(builtin_path("scanner", "ct_sharp_1mm"))
    'CT, 1 mm slices, sharp kernel: fine detail and strong, uncorrelated noise'
    >>> describe(builtin_path("experiment", "gate"))
    "The default reference set of `harmony gate`: tiny built-in phantoms extracted with the study's..."
    """
    path = Path(path)
    text = ""
    if path.suffix == ".toml":
        data = read_toml(path)
        experiment = data.get("experiment")
        text = data.get("description") or (experiment.get("description") if isinstance(experiment, dict) else "")
        text = text if isinstance(text, str) else ""
    text = " ".join((text or _leading_comment(path)).split())
    text = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", text, maxsplit=1)[0]
    if len(text) > DESCRIPTION_WIDTH:
        text = text[: DESCRIPTION_WIDTH - 3].rsplit(" ", 1)[0] + "..."
    return text


def catalog() -> dict[str, dict[str, str]]:
    """Every shipped example, by kind and name, with its description.

    Returns
    -------
    dict of str to dict of str to str
        Kind -> name -> :func:`describe` of its file.

    Examples
    --------
    >>> catalog()["design"]["mirp"]
    'mirp-style image perturbations (Zwanenburg et al. 2019)'
    """
    return {kind: {name: describe(builtin_path(kind, name)) for name in builtin_names(kind)} for kind in KINDS}


def copy_examples(destination: str | os.PathLike) -> list[Path]:
    """Copy the shipped ``experiments/`` and ``phantoms/`` into ``destination``.

    Existing files are never overwritten: a file already there raises ConfigError before anything is copied.

    Parameters
    ----------
    destination : str or path-like
        A folder (created when missing).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ConfigError
        When ``destination`` is a file, a file to write already exists, or copying fails.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"{destination}: is a file, expected a folder for the examples")
    source = examples_dir()
    files = sorted(p for top in TOPS for p in (source / top).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    targets = [destination / p.relative_to(source) for p in files]
    clash = next((t for t in targets if t.exists() or t.is_symlink()), None)
    if clash is not None:
        raise ConfigError(f"{clash}: already exists; copy the examples into an empty folder")
    try:
        for file, target in zip(files, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    except OSError as exc:
        raise ConfigError(f"{destination}: cannot copy the examples there ({exc.strerror or exc})") from None
    return targets
