"""What a worker does: load a case, make a group's variants, extract the requested parts (the worker entry point)."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Any

from harmony.core import schema
from harmony.core.images import check_finite_in_mask, read_image
from harmony.extraction.adapter import source_diagnostics
from harmony.extraction.shared import SharedExtraction, extraction_parts
from harmony.extraction.tasks import _Group
from harmony.perturb.variants import iter_variants

__all__: list[str] = []  # the worker's internals; the engine (run_tasks) is the public entry point

logger = logging.getLogger(__name__)


#: Rough relative cost of one part of a group (ordering work longest first balances the workers); measured
#: on lung1 (27 variants, one worker): the wavelet's 8 images' features, one LoG sigma (filter and features),
#: the original image with the shape features. Any other image type counts as one LoG.
_PART_COST = {"Wavelet": 4.0, "LoG": 1.2, "Original": 0.8}
#: Split groups into parts unless every worker gets at least this many whole groups.
_GROUPS_PER_WORKER = 4


@dataclass(frozen=True)
class _Unit:
    """What one worker computes: ``parts`` (None: all) of one group, plus shape features when ``shape``."""

    group: _Group
    params: dict
    label: int
    parts: tuple | None
    shape: bool
    index: int  # position among the group's units; results are merged in this order
    threads: int | None  # SimpleITK and BLAS threads in the worker (1 when workers share the cores)

    @property
    def cost(self) -> float:
        """Rough relative run time of a part of a group (whole groups all cost the same)."""
        return sum(_PART_COST.get(p[0], 1.2) for p in self.parts) if self.parts else 1.0


_PREPARED: collections.OrderedDict = collections.OrderedDict()
_PREPARED_MAX = 3  # groups a worker keeps (image and filtered crops) for the other parts of a split group


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _prepare(unit: _Unit):
    """Load the case, make the group's variants and set up their shared extraction (cached per worker).

    Returns the keys of the tasks that extract, their :class:`~harmony.extraction.shared.SharedExtraction`, the error
    text of the tasks that failed already, and the case's image and mask as loaded (None if unreadable).
    """

    group = unit.group
    key = (group.image, group.mask, group.repeat, tuple(t.key for t in group.tasks))
    if key in _PREPARED:
        _PREPARED.move_to_end(key)
        return _PREPARED[key]
    errors: dict[str, str] = {}
    try:
        image, mask = read_image(group.image, "image", group.case_id), read_image(group.mask, "mask", group.case_id)
        check_finite_in_mask(image, mask, unit.label, group.case_id)
    except Exception as exc:
        image, mask, errors = None, None, {t.key: _error_text(exc) for t in group.tasks}
    source = None if image is None else (image, mask)
    ok_keys, masks, params = [], [], []
    if image is not None:
        made = iter_variants(image, mask, group.variants, case_id=group.case_id, repeat=group.repeat,
                             label=unit.label)
        task_of = {t.variant_id: t for t in group.tasks}
        for variant, pair, error in made:
            task = task_of[variant.variant_id]
            if error is not None:
                errors[task.key] = _error_text(error)
                continue
            image = pair[0]  # the same image for every variant of the group
            ok_keys.append(task.key)
            masks.append(pair[1])
            params.append(variant.apply_settings(unit.params))
    shared = SharedExtraction(image, masks, params, label=unit.label) if ok_keys else None
    prepared = (ok_keys, shared, errors, source)
    if unit.parts is not None:  # other parts of this group may come to this worker
        _PREPARED[key] = prepared
        while len(_PREPARED) > _PREPARED_MAX:
            _PREPARED.popitem(last=False)
    return prepared


def _run_unit(unit: _Unit) -> tuple[dict[str, dict[str, Any] | str], float]:
    """Per task key of the group: the unit's features (a dict) or the error text (a str); and its seconds.

    The original variant's task at repeat 0 also gets pyradiomics' diagnostics of the case's image and mask
    (``diagnostics_*`` keys, once per case: they cost full-grid work); :func:`_write_task` separates them.
    """
    start = time.perf_counter()
    return _unit_results(unit), time.perf_counter() - start


def _unit_results(unit: _Unit) -> dict[str, dict[str, Any] | str]:
    if unit.threads is not None:  # BLAS threads spin while they wait: oversubscribed cores crawl
        import SimpleITK as sitk
        from threadpoolctl import threadpool_limits

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(unit.threads)
        threadpool_limits(unit.threads)
    try:
        ok_keys, shared, errors, source = _prepare(unit)
    except Exception as exc:  # anything unforeseen fails this group's tasks, not the run
        return {t.key: _error_text(exc) for t in unit.group.tasks}
    out: dict[str, dict[str, Any] | str] = dict(errors)
    if shared is not None:
        for key, result in zip(ok_keys, shared.run(parts=unit.parts, shape=unit.shape)):
            out[key] = _error_text(result) if isinstance(result, Exception) else result
    original = next((t.key for t in unit.group.tasks if t.variant_id == schema.ORIGINAL), None)
    if unit.shape and unit.group.repeat == 0 and isinstance(out.get(original), dict):
        out[original] = {**_source_diagnostics(source, unit), **out[original]}
    return out


def _source_diagnostics(source: tuple, unit: _Unit) -> dict[str, Any]:
    try:
        return source_diagnostics(*source, unit.params, unit.label)
    except Exception as exc:  # provenance only: its failure must not fail an extraction that succeeded
        logger.warning("case %r: no pyradiomics diagnostics (%s)", unit.group.case_id, _error_text(exc))
        return {}


def _units(groups: list[_Group], params: dict, workers: int, threads: int | None) -> list[_Unit]:
    """Whole groups when there are many for the workers, else groups split by image type (LoG by sigma).

    A split group's parts may run on different workers, each loading the case and making the group's image
    (kept for its next part: ``_PREPARED``; local workers take the next part of the group they hold first); a
    part computes its filtered images once and the features of all the group's variants on them. Longest first,
    so that the last units to finish are short ones.
    """
    split = workers > 1 and len(groups) < _GROUPS_PER_WORKER * workers
    units = []
    for group in groups:
        if not split:
            units.append(_Unit(group, params, group.label, None, True, 0, threads))
            continue
        parts = extraction_parts([v.apply_settings(params) for v in group.variants], group.label)
        units += [_Unit(group, params, group.label, (part,), i == 0, i, threads) for i, part in enumerate(parts)]
    return sorted(units, key=lambda u: -u.cost)  # longest first; sort is stable within equal costs
