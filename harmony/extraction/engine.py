"""The extraction engine: plans case x variant x repeat tasks, runs them serially, in local processes or on
Dask, writes each finished task atomically and resumes an interrupted run.

Run directory layout::

    <out>/harmony.lock           pid, host and start time of the run in progress
    <out>/tasks/                 the task store (:mod:`harmony.extraction.taskfiles`): one Parquet file per
                                 finished task (its feature rows, none if it failed) in 256 shard folders,
                                 and ``index.jsonl``: per task its status, error, (original variant)
                                 diagnostics and the sha256 of its file, checked when a run resumes
    <out>/features.parquet       consolidated at the end (schema.FEATURES), in plan order, streamed
    <out>/failures.parquet       the failed tasks (schema.FAILURES)
    <out>/manifest.json          provenance, task counts, seeds, resolved settings and their hash, per case
                                 pyradiomics' diagnostics of the original image and mask

Work is planned per (case, repeat, image_key) group: a worker loads the case once, makes the group's image
once (:func:`harmony.perturb.iter_variants`) and computes each pyradiomics filter once for all the group's
mask and settings variants (:class:`harmony.extraction.shared.SharedExtraction`). Unless there are many groups
per worker, a group is split into units of one image type (LoG by sigma): the filters of one image run on
different workers, and the features of every mask and settings variant of a filtered image are computed
where that image is (:func:`harmony.extraction.work._units`). Results do not depend on the split, the
executor or the number of workers.

Failed tasks are recorded like finished ones, so a resumed run does not retry them unless asked
(``retry_failed=True``, ``harmony extract --retry-failed``): a failure is usually a property of the task (a
mask eroded to nothing) that a retry would only repeat.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.core.files import read_table, stable_hash, write_table
from harmony.core.lock import RunLock
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from harmony.core.progress import progress_bar
from harmony.extraction.adapter import make_extractor
from harmony.extraction.executors import execute, start_fork_server
from harmony.extraction.ibsi import IBSI_SECTION, ibsi_adjustments
from harmony.extraction.params import resolve_label
from harmony.extraction.settings import EXECUTORS
from harmony.extraction.taskfiles import (
    FAILURES_NAME,
    FEATURES_NAME,
    _consolidate,
    _finished,
    _write_task,
)
from harmony.extraction.tasks import _Group, plan
from harmony.extraction.work import _Unit, _units

__all__ = ["RunResult", "run_tasks"]

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """A finished run: its task counts (``resumed`` were done by an earlier run) and tables.

    ``features`` (:data:`harmony.core.schema.FEATURES`, in plan order) is the run's ``features.parquet``, read
    by :func:`run_tasks` (or, with ``keep_features=False``, when first used: a run that never looks at it never
    holds it in memory).

    Parameters
    ----------
    out_dir : pathlib.Path
        The run's output directory.
    failures : DataFrame
        The failed tasks (:data:`harmony.core.schema.FAILURES`).
    total, done, failed, resumed : int
        Task counts: all, succeeded, failed, and finished by an earlier run (not redone).
    diagnostics : dict
        The engine's work: executor, workers, groups, units, seconds.
    case_diagnostics : dict of str to dict
        Per case, pyradiomics' ``diagnostics_*`` of the original image and mask (when the original variant
        ran).
    """

    out_dir: Path
    failures: pd.DataFrame
    total: int
    done: int
    failed: int
    resumed: int
    diagnostics: dict[str, Any] = field(default_factory=dict)
    case_diagnostics: dict[str, dict] = field(default_factory=dict)

    @functools.cached_property
    def features(self) -> pd.DataFrame:
        """The features table, read from ``features.parquet`` (once)."""
        return read_table(self.out_dir / FEATURES_NAME, schema.FEATURES)


def run_tasks(cases: pd.DataFrame, variants: Sequence | None, params: Mapping[str, Any],
              out_dir: str | os.PathLike, *, repeats: int = 1, executor: str = "processes", workers: int = 0,
              scheduler: str = "", label: int | None = None, progress: bool | None = None,
              retry_failed: bool = False, command: str = "extract", keep_features: bool = True,
              threads_per_worker: int = 0) -> RunResult:
    """Extract every case x variant x repeat into ``out_dir``, resuming what an earlier run finished.

    Each finished task is written atomically (``tasks/<k[:2]>/<key>.parquet``, its sha256 in
    ``tasks/index.jsonl``), so an interrupted run resumes task by task, recomputing any task file that no
    longer matches its digest; the results do not depend on the executor, the number of workers or the split
    of the work (see the module's description). ``harmony extract`` and the extraction stage of ``harmony run``.

    Parameters
    ----------
    cases : DataFrame
        A cases table (:func:`harmony.load_cases`).
    variants : sequence of Variant or None
        The variants to extract (:func:`harmony.expand_design`); ``None``: the original only.
    params : mapping
        The base pyradiomics parameters, to which each variant applies its settings.
    out_dir : str or os.PathLike
        The output directory (locked while the run lasts).
    repeats : int, default 1
        Repeats of every (case, variant): independent draws of the random specs.
    executor : {"serial", "processes", "dask"}, default "processes"
        Where the work runs.
    workers : int, default 0
        Worker count; 0 uses one per core.
    scheduler : str, default ""
        Dask scheduler address; empty starts a local cluster.
    label : int, optional
        The mask label (default: the parameters', else 1).
    progress : bool, optional
        ``None`` shows a bar on a terminal only, ``False`` never.
    retry_failed : bool, default False
        Run again the tasks an earlier run recorded as failed.
    command : str, default "extract"
        The command recorded in the manifest.
    keep_features : bool, default True
        Read the consolidated features table into the result; ``False`` leaves it on disk until
        ``result.features`` is used (``harmony run`` reads it stage by stage).
    threads_per_worker : int, default 0
        SimpleITK and BLAS threads in each worker. 0: 1 on a Dask cluster given by ``scheduler`` (whose workers
        are started one per core), else this machine's cores shared out among the workers (at least 1 each);
        one worker keeps SimpleITK's own default (all cores) and leaves the calling process as it is.

    Returns
    -------
    RunResult
        The task counts and tables, also written to ``features.parquet``, ``failures.parquet`` and
        ``manifest.json``.

    Raises
    ------
    ConfigError
        Bad ``executor``, ``workers`` or ``repeats``, or parameters pyradiomics rejects (before any work).
    LockError
        Another live run holds ``out_dir``.

    Examples
    --------
    >>> import tempfile
    >>> from harmony.perturb import BinWidth, Variant
    >>> from harmony.phantoms import write_ibsi_phantom
    >>> params = {"setting": {"binWidth": 1, "minimumROIDimensions": 1}, "featureClass": {"firstorder": ["Mean"]}}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cases = write_ibsi_phantom(Path(folder) / "phantom")
    ...     result = run_tasks(cases, [Variant(), Variant((BinWidth(width=2),))], params, Path(folder) / "out",
    ...                        executor="serial", progress=False)
    ...     again = run_tasks(cases, None, params, Path(folder) / "out", executor="serial", progress=False)
    >>> result.total, result.done, len(result.features), again.resumed
    (2, 2, 2, 1)
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers!r}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
    if threads_per_worker < 0:
        raise ConfigError(f"threads_per_worker must be >= 0, got {threads_per_worker!r}")
    started, clock = now_utc(), time.perf_counter()
    start_fork_server(executor)  # its imports overlap the planning
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
                                   tuple(g.tasks[i] for i in missing), g.label))
        n_workers = 1 if executor == "serial" else workers
        threads = _threads(n_workers, threads_per_worker, remote=executor == "dask" and bool(scheduler))
        units = _units(todo, params, n_workers, threads)
        logger.info("%d tasks, %d already done; %d groups in %d units on %s (%d workers)", len(tasks), len(done),
                    len(todo), len(units), executor, n_workers)
        unit_seconds = _run_units(out, units, len(tasks), len(done), executor, n_workers, scheduler, progress)
        failures, case_diagnostics = _consolidate(out, tasks)
        write_table(failures, out / FAILURES_NAME, schema.FAILURES)
        diagnostics = {"executor": executor, "workers": n_workers, "threads_per_worker": threads,
                       "groups": len(todo), "units": len(units),
                       "unit_seconds": unit_seconds, "seconds": round(time.perf_counter() - clock, 3)}
        counts = {"total": len(tasks), "done": len(tasks) - len(failures), "failed": len(failures),
                  "resumed": len(done)}
        all_variants = {v.variant_id: v for g in groups for v in g.variants}.values()
        write_manifest(out, build_manifest(
            command=command, started=started, tasks=counts,
            config={"params": params, "label": label, "repeats": repeats,
                    "variants": {v.variant_id: v.params for v in all_variants}},
            seeds={"variants": {v.variant_id: v.seed for v in all_variants if v.seed}},
            resolved_settings=resolved, settings_hash=stable_hash(resolved, length=64), engine=diagnostics,
            standard="ibsi" if IBSI_SECTION in params else "pyradiomics",
            ibsi_adjustments=ibsi_adjustments(params) if IBSI_SECTION in params else [],
            diagnostics=case_diagnostics))
    result = RunResult(out, failures, counts["total"], counts["done"], counts["failed"], counts["resumed"],
                       diagnostics, case_diagnostics)
    if keep_features:
        result.features  # noqa: B018 - read now, while the folder is the one this run consolidated
    return result


def _threads(workers: int, threads_per_worker: int, remote: bool) -> int | None:
    """Threads per worker: as asked; else 1 on a cluster's workers (started one per core), this machine's cores
    shared out among local workers (each using all of them would oversubscribe the cores: BLAS threads spin
    while they wait), or None (SimpleITK's default) for one local worker."""
    if threads_per_worker:
        return threads_per_worker
    if remote:
        return 1
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


def _run_units(out: Path, units: list[_Unit], total: int, already: int, executor: str, workers: int,
               scheduler: str, progress: bool | None) -> list[float]:
    """Run the units; write a group's task files as soon as all its units are in. Returns each unit's seconds
    in its worker (in the order they finished): the costs that bound what more workers can gain."""
    expected = collections.Counter(id(u.group) for u in units)
    partial: dict[int, list[tuple[int, dict]]] = collections.defaultdict(list)
    seconds = []
    with progress_bar(total=total, initial=already, desc="extract", unit="task", progress=progress) as bar:
        for unit, (result, took) in execute(units, executor, workers, scheduler):
            seconds.append(round(took, 4))
            gid = id(unit.group)
            partial[gid].append((unit.index, result))
            if len(partial[gid]) < expected[gid]:
                continue
            pieces = [r for _, r in sorted(partial.pop(gid), key=lambda p: p[0])]
            for task in unit.group.tasks:
                _write_task(out, task, _merge([p[task.key] for p in pieces]))
            bar.update(len(unit.group.tasks))
    return seconds


def _merge(pieces: list[dict[str, Any] | str]) -> dict[str, Any] | str:
    """One task's result from its units' pieces, in unit order; the first error wins."""
    errors = [p for p in pieces if isinstance(p, str)]
    if errors:
        return errors[0]
    merged: dict[str, Any] = {}
    for piece in pieces:
        merged.update(piece)
    return merged
