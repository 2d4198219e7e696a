"""The extraction engine: plans case x variant x repeat tasks, runs them serially, in local processes or on
Dask, writes each finished task atomically and resumes an interrupted run.

Run directory layout::

    <out>/harmony.lock           pid, host and start time of the run in progress
    <out>/tasks/<key>.parquet    one file per finished task: its feature rows (none if it failed); the task's
                                 identity, status, error and (original variant) diagnostics are in
                                 the file's metadata
    <out>/features.parquet       consolidated at the end (schema.FEATURES), in plan order
    <out>/failures.parquet       the failed tasks (schema.FAILURES)
    <out>/manifest.json          provenance, task counts, seeds, resolved settings and their hash, per case
                                 pyradiomics' diagnostics of the original image and mask

Work is submitted per (case, repeat, image_key) group: a worker loads the case once, makes the group's image
once (:func:`harmony.perturb.iter_variants`) and computes each pyradiomics filter once for all the group's
mask and settings variants (:class:`harmony.extract.SharedExtraction`). When there are few groups for the
workers, a group is split by image type (LoG by sigma) so that all workers stay busy; results do not depend
on the split, the executor or the number of workers.

Failed tasks are recorded like finished ones, so a resumed run does not retry them unless asked
(``retry_failed=True``, ``harmony extract --retry-failed``): a failure is usually a property of the task (a
mask eroded to nothing) that a retry would only repeat.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.config import Field, Section
from harmony.core.errors import ConfigError
from harmony.core.files import stable_hash, write_table
from harmony.core.lock import RunLock
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from harmony.core.progress import progress_bar
from harmony.extraction.adapter import make_extractor
from harmony.extraction.executors import EXECUTORS, _execute
from harmony.extraction.params import resolve_label
from harmony.extraction.taskfiles import (
    FAILURES_NAME,
    FEATURES_NAME,
    _consolidate,
    _finished,
    _write_task,
)
from harmony.extraction.tasks import _Group, plan
from harmony.extraction.work import _Unit, _units

logger = logging.getLogger(__name__)


#: The ``[engine]`` section of an experiment config.
SETTINGS = Section(
    {
        "executor": Field(str, "processes", choices=EXECUTORS,
                          doc="serial (in this process), processes (local worker processes) or dask."),
        "workers": Field(int, 0, min=0, doc="Worker count; 0 means one per core."),
        "scheduler": Field(str, "", doc="Dask scheduler address; empty starts a LocalCluster."),
        "repeats": Field(int, 1, min=1, doc="Repeats of every (case, variant) task."),
        "retry_failed": Field(bool, False, doc="On resume, run again the tasks that failed before."),
    }
)


# -- the run --------------------------------------------------------------------------------------------

@dataclass
class RunResult:
    """A finished run: its tables and task counts (``resumed`` were done by an earlier run).

    ``diagnostics`` describes the engine's work (executor, workers, units, seconds); ``case_diagnostics`` holds
    per case pyradiomics' ``diagnostics_*`` of the original image and mask (when the original variant ran).
    """

    out_dir: Path
    features: pd.DataFrame
    failures: pd.DataFrame
    total: int
    done: int
    failed: int
    resumed: int
    diagnostics: dict[str, Any] = field(default_factory=dict)
    case_diagnostics: dict[str, dict] = field(default_factory=dict)


def run_tasks(cases: pd.DataFrame, variants: Sequence | None, params: Mapping[str, Any],
              out_dir: str | os.PathLike, *, repeats: int = 1, executor: str = "processes", workers: int = 0,
              scheduler: str = "", label: int | None = None, progress: bool | None = None,
              retry_failed: bool = False, command: str = "extract") -> RunResult:
    """Extract every case x variant x repeat into ``out_dir``, resuming what an earlier run finished.

    ``variants`` are :class:`harmony.perturb.Variant` (None: the original only); ``params`` the base
    pyradiomics parameters, to which each variant applies its settings. ``workers=0`` uses one worker per
    core. ``progress``: None shows a bar on a terminal only, False never. Returns the consolidated tables,
    also written to ``features.parquet``, ``failures.parquet`` and ``manifest.json``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers!r}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
    started, clock = now_utc(), time.perf_counter()
    params = dict(params)
    extractor = make_extractor(params)  # bad settings fail before anything runs
    resolved = {"setting": extractor.settings, "imageType": extractor.enabledImagetypes,
                "featureClass": extractor.enabledFeatures}  # pyradiomics' defaults filled in
    label = resolve_label(params, label)
    workers = workers or os.cpu_count() or 1
    out = Path(out_dir)
    with RunLock(out):
        groups = plan(cases, variants, params, repeats=repeats, label=label)
        tasks = [t for g in groups for t in g.tasks]
        done = _finished(out, tasks, retry_failed)
        todo = []
        for g in groups:
            missing = tuple(i for i, t in enumerate(g.tasks) if t.key not in done)
            if missing:
                todo.append(_Group(g.case_id, g.image, g.mask, g.repeat, tuple(g.variants[i] for i in missing),
                                   tuple(g.tasks[i] for i in missing)))
        n_workers = 1 if executor == "serial" else workers
        threads = 1 if n_workers > 1 else None  # workers that share the cores must not each use them all
        units = _units(todo, params, label, n_workers, threads)
        logger.info("%d tasks, %d already done; %d groups in %d units on %s (%d workers)", len(tasks), len(done),
                    len(todo), len(units), executor, n_workers)
        _run_units(out, units, len(tasks), len(done), executor, n_workers, scheduler, progress)
        features, failures, case_diagnostics = _consolidate(out, tasks)
        write_table(features, out / FEATURES_NAME, schema.FEATURES)
        write_table(failures, out / FAILURES_NAME, schema.FAILURES)
        diagnostics = {"executor": executor, "workers": n_workers, "groups": len(todo), "units": len(units),
                       "seconds": round(time.perf_counter() - clock, 3)}
        counts = {"total": len(tasks), "done": len(tasks) - len(failures), "failed": len(failures),
                  "resumed": len(done)}
        all_variants = {v.variant_id: v for g in groups for v in g.variants}.values()
        write_manifest(out, build_manifest(
            command=command, started=started, tasks=counts,
            config={"params": params, "label": label, "repeats": repeats,
                    "variants": {v.variant_id: v.params for v in all_variants}},
            seeds={"variants": {v.variant_id: v.seed for v in all_variants if v.seed}},
            resolved_settings=resolved, settings_hash=stable_hash(resolved, length=64), engine=diagnostics,
            diagnostics=case_diagnostics))
    return RunResult(out, features, failures, counts["total"], counts["done"], counts["failed"], counts["resumed"],
                     diagnostics, case_diagnostics)


def _run_units(out: Path, units: list[_Unit], total: int, already: int, executor: str, workers: int,
               scheduler: str, progress: bool | None) -> None:
    """Run the units; write a group's task files as soon as all its units are in."""
    expected = collections.Counter(id(u.group) for u in units)
    partial: dict[int, list[tuple[int, dict]]] = collections.defaultdict(list)
    with progress_bar(total=total, initial=already, desc="extract", unit="task", progress=progress) as bar:
        for unit, result in _execute(units, executor, workers, scheduler):
            gid = id(unit.group)
            partial[gid].append((unit.index, result))
            if len(partial[gid]) < expected[gid]:
                continue
            pieces = [r for _, r in sorted(partial.pop(gid), key=lambda p: p[0])]
            for task in unit.group.tasks:
                _write_task(out, task, _merge([p[task.key] for p in pieces]))
            bar.update(len(unit.group.tasks))


def _merge(pieces: list[dict[str, Any] | str]) -> dict[str, Any] | str:
    """One task's result from its units' pieces, in unit order; the first error wins."""
    errors = [p for p in pieces if isinstance(p, str)]
    if errors:
        return errors[0]
    merged: dict[str, Any] = {}
    for piece in pieces:
        merged.update(piece)
    return merged
