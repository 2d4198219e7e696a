"""Planning: the tasks of cases x variants x repeats, grouped by the image they share, with stable keys."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harmony.core import schema
from harmony.core.errors import ConfigError, HarmonyError
from harmony.core.files import file_digest, stable_hash
from harmony.core.manifest import versions
from harmony.extraction.params import resolve_label
from harmony.perturb.variants import Variant

if TYPE_CHECKING:  # workers import this module for _Group: pandas would add 0.3 s to each worker's start
    import pandas as pd

__all__ = ["Task", "extraction_versions", "task_key", "plan"]


@dataclass(frozen=True)
class Task:
    """One extraction: a case, a variant and a repeat. ``key`` names its result file.

    Parameters
    ----------
    key : str
        The task's stable key (:func:`task_key`).
    case_id, site, variant_id : str
        What is extracted.
    repeat : int
        The repeat.
    """

    key: str
    case_id: str
    site: str
    variant_id: str
    repeat: int


@dataclass(frozen=True)
class _Group:
    """The tasks of one (case, repeat, image_key): they share the perturbed image and its filtered images."""

    case_id: str
    image: str
    mask: str
    repeat: int
    variants: tuple  # of harmony.perturb.Variant
    tasks: tuple[Task, ...]  # one per variant, same order
    label: int = 1  # the case's mask label


@functools.lru_cache(maxsize=1)
def extraction_versions() -> dict[str, str]:
    """Versions whose change can change a feature value (cached for the process).

    Part of every task key, so that resuming a run after an upgrade re-extracts instead of mixing old and
    new values.

    Returns
    -------
    dict of str to str
        harmony, the pyradiomics distribution and version, numpy, SimpleITK and PyWavelets.

    Examples
    --------
    >>> sorted(extraction_versions())
    ['PyWavelets', 'SimpleITK', 'harmony-radiomics', 'numpy', 'pyradiomics', 'pyradiomics_distribution']
    """
    found = versions()
    return {k: found[k] for k in ("harmony-radiomics", "pyradiomics_distribution", "pyradiomics", "numpy",
                                  "SimpleITK", "PyWavelets")}


def task_key(image_digest: str, mask_digest: str, variant_params: str, repeat: int,
             params: Mapping[str, Any], label: int, case_id: str = "") -> str:
    """The stable key of a task: equal inputs and extractor versions give equal keys on every machine.

    The case id is part of the key: two cases with byte-identical files are two tasks, each with its own
    result file naming its own case.

    Parameters
    ----------
    image_digest, mask_digest : str
        The sha256 of the case's files (:func:`harmony.core.files.file_digest`).
    variant_params : str
        The variant's ``params`` JSON.
    repeat : int
        The repeat.
    params : mapping
        The base pyradiomics parameters.
    label : int
        The mask label.
    case_id : str, default ""
        The case.

    Returns
    -------
    str
        32 hex digits.

    Examples
    --------
    >>> key = task_key("ab", "cd", "[]", 0, {"setting": {"binWidth": 25}}, 1)
    >>> len(key), key == task_key("ab", "cd", "[]", 0, {"setting": {"binWidth": 25}}, 1)
    (32, True)
    >>> key == task_key("ab", "cd", "[]", 1, {"setting": {"binWidth": 25}}, 1)
    False
    """
    return stable_hash({"case": case_id, "image": image_digest, "mask": mask_digest, "variant": variant_params,
                        "repeat": repeat, "params": params, "label": label, "versions": extraction_versions()},
                       length=32)


def _original_variants() -> list[Variant]:
    return [Variant(())]


def plan(cases: pd.DataFrame, variants: Sequence | None, params: Mapping[str, Any], *, repeats: int = 1,
         label: int | None = None) -> list[_Group]:
    """The groups of tasks of cases x variants x repeats, in case, repeat, image_key order.

    A group holds the tasks of one (case, repeat, image_key): they share the perturbed image and its
    filtered images, so a worker runs them together.

    Parameters
    ----------
    cases : DataFrame
        A cases table; its files are hashed for the task keys.
    variants : sequence of Variant or None
        The variants (``None``: the original only).
    params : mapping
        The base pyradiomics parameters.
    repeats : int, default 1
        Repeats of every (case, variant).
    label : int, optional
        The mask label (default: the parameters', else 1).

    Returns
    -------
    list
        The groups: records with ``case_id, image, mask, repeat, variants, tasks`` (one :class:`Task` per
        variant, same order).

    Raises
    ------
    ConfigError
        ``repeats`` is below 1.
    HarmonyError
        A ``variant_id`` is listed twice.
    SchemaError
        ``cases`` is not a cases table.

    Examples
    --------
    >>> import tempfile
    >>> from harmony.perturb.specs import BinWidth, Noise
    >>> from harmony.phantoms import write_ibsi_phantom
    >>> variants = [Variant(), Variant((BinWidth(width=2),)), Variant((Noise(level=1.0, seed=1),))]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     groups = plan(write_ibsi_phantom(folder), variants, {}, repeats=2)
    >>> [(g.repeat, len(g.tasks)) for g in groups]
    [(0, 2), (0, 1), (1, 2), (1, 1)]
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
    cases = schema.CASES.validate(cases, source="engine")
    variants = list(variants) if variants is not None else _original_variants()
    ids = [v.variant_id for v in variants]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise HarmonyError(f"variant_id {duplicated[0]!r} is listed more than once")
    by_image: dict[str, list] = {}
    for v in variants:
        by_image.setdefault(v.image_key, []).append(v)
    label = resolve_label(params, label)
    groups = []
    for case in cases.to_dict("records"):
        digests = file_digest(case[schema.IMAGE]), file_digest(case[schema.MASK])
        case_label = _case_label(case, label)
        for repeat in range(repeats):
            for members in by_image.values():
                tasks = tuple(Task(task_key(*digests, v.params, repeat, params, case_label, case[schema.CASE_ID]),
                                   case[schema.CASE_ID], case[schema.SITE], v.variant_id, repeat) for v in members)
                groups.append(_Group(case[schema.CASE_ID], case[schema.IMAGE], case[schema.MASK], repeat,
                                     tuple(members), tasks, case_label))
    return groups


def _case_label(case: Mapping[str, Any], label: int) -> int:
    """The case's own mask label (its ``label`` cell, checked by :func:`harmony.core.cases.load_cases`), else
    the study's."""
    import pandas as pd

    cell = case.get(schema.LABEL)
    if cell is None or pd.isna(cell) or str(cell).strip() == "":
        return label
    return int(float(cell))
