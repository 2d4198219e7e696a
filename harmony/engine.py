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
import functools
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmony import schema
from harmony.config import Field, Section
from harmony.errors import ConfigError, HarmonyError
from harmony.io import atomic_write, build_manifest, now_utc, stable_hash, versions, write_manifest, write_table
from harmony.progress import progress_bar

logger = logging.getLogger(__name__)

EXECUTORS = ("serial", "processes", "dask")

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

LOCK_NAME = "harmony.lock"
TASKS_DIR = "tasks"
FEATURES_NAME = "features.parquet"
FAILURES_NAME = "failures.parquet"
_META_KEY = b"harmony.task"
OK, FAILED = "ok", "failed"


class LockError(HarmonyError):
    """Another live run holds the run directory."""


# -- planning -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """One extraction: a case, a variant and a repeat. ``key`` names its result file."""

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


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, cached per (path, mtime, size) in this process."""
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


def resolve_label(params: Mapping[str, Any], label: int | None) -> int:
    """The mask label: ``label`` if given, else the parameters' ``setting.label``, else 1.

    >>> resolve_label({"setting": {"label": 2}}, None), resolve_label({"setting": {"label": 2}}, 3), resolve_label({}, None)
    (2, 3, 1)
    """
    return int(label if label is not None else (params.get("setting") or {}).get("label", 1))


@functools.lru_cache(maxsize=1)
def extraction_versions() -> dict[str, str]:
    """Versions whose change can change a feature value; part of every task key, so that resuming a run
    after an upgrade re-extracts instead of mixing old and new values."""
    found = versions()
    return {k: found[k] for k in ("harmony-radiomics", "pyradiomics_distribution", "pyradiomics", "numpy",
                                  "SimpleITK", "PyWavelets")}


def task_key(image_digest: str, mask_digest: str, variant_params: str, repeat: int,
             params: Mapping[str, Any], label: int) -> str:
    """The stable key of a task: equal inputs and extractor versions give equal keys on every machine."""
    return stable_hash({"image": image_digest, "mask": mask_digest, "variant": variant_params, "repeat": repeat,
                        "params": params, "label": label, "versions": extraction_versions()}, length=32)


def _original_variants() -> list:
    from harmony.perturb import Variant

    return [Variant(())]


def plan(cases: pd.DataFrame, variants: Sequence | None, params: Mapping[str, Any], *, repeats: int = 1,
         label: int | None = None) -> list[_Group]:
    """The groups of tasks of cases x variants x repeats, in case, repeat, image_key order."""
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
        for repeat in range(repeats):
            for members in by_image.values():
                tasks = tuple(Task(task_key(*digests, v.params, repeat, params, label), case[schema.CASE_ID],
                                   case[schema.SITE], v.variant_id, repeat) for v in members)
                groups.append(_Group(case[schema.CASE_ID], case[schema.IMAGE], case[schema.MASK], repeat,
                                     tuple(members), tasks))
    return groups


# -- the work a worker does -----------------------------------------------------------------------------

#: Rough relative cost of one part of a group (ordering work longest first balances the workers).
_PART_COST = {"Wavelet": 1.3, "LoG": 1.0}  # measured on lung1: filter plus its features


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
        return sum(_PART_COST.get(p[0], 0.3) for p in self.parts) if self.parts else 1.0


_PREPARED: collections.OrderedDict = collections.OrderedDict()
_PREPARED_MAX = 3  # groups a worker keeps (image and filtered crops) for the other parts of a split group


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _prepare(unit: _Unit):
    """Load the case, make the group's variants and set up their shared extraction (cached per worker).

    Returns the keys of the tasks that extract, their :class:`~harmony.extract.SharedExtraction`, the error
    text of the tasks that failed already, and the case's image and mask as loaded (None if unreadable).
    """
    from harmony.extract import SharedExtraction, read_image
    from harmony.perturb import iter_variants

    group = unit.group
    key = (group.image, group.mask, group.repeat, tuple(t.key for t in group.tasks))
    if key in _PREPARED:
        _PREPARED.move_to_end(key)
        return _PREPARED[key]
    errors: dict[str, str] = {}
    try:
        image, mask = read_image(group.image, "image", group.case_id), read_image(group.mask, "mask", group.case_id)
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


def _run_unit(unit: _Unit) -> dict[str, dict[str, Any] | str]:
    """Per task key of the group: the unit's features (a dict) or the error text (a str).

    The original variant's task at repeat 0 also gets pyradiomics' diagnostics of the case's image and mask
    (``diagnostics_*`` keys, once per case: they cost full-grid work); :func:`_write_task` separates them.
    """
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
    from harmony.extract import source_diagnostics

    try:
        return source_diagnostics(*source, unit.params, unit.label)
    except Exception as exc:  # provenance only: its failure must not fail an extraction that succeeded
        logger.warning("case %r: no pyradiomics diagnostics (%s)", unit.group.case_id, _error_text(exc))
        return {}


def _units(groups: list[_Group], params: dict, label: int, workers: int, threads: int | None) -> list[_Unit]:
    """Whole groups when there are enough of them for the workers, else groups split by image type."""
    from harmony.extract import extraction_parts

    split = workers > 1 and len(groups) < 2 * workers
    units = []
    for group in groups:
        if not split:
            units.append(_Unit(group, params, label, None, True, 0, threads))
            continue
        parts = extraction_parts([v.apply_settings(params) for v in group.variants], label)
        units += [_Unit(group, params, label, (part,), i == 0, i, threads) for i, part in enumerate(parts)]
    return sorted(units, key=lambda u: -u.cost)  # longest first; sort is stable within equal costs


# -- executors --------------------------------------------------------------------------------------------

def _serial(units: list[_Unit]) -> Iterator[tuple[_Unit, dict]]:
    for unit in units:
        yield unit, _run_unit(unit)


def _watch_parent(parent: int) -> None:
    """Worker initializer: exit when the run that started this worker is gone (killed runs leave no workers)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="harmony-parent-watch").start()


def _processes(units: list[_Unit], workers: int) -> Iterator[tuple[_Unit, dict]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: SimpleITK and pyradiomics hold threads and global state that a fork would copy half-made
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_watch_parent, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(_run_unit, unit): unit for unit in units}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(units: list[_Unit], workers: int, scheduler: str) -> Iterator[tuple[_Unit, dict]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise HarmonyError(f"executor 'dask' needs dask[distributed] ({exc}); install harmony-radiomics[dask]") \
            from None

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {client.submit(_run_unit, unit, pure=False): unit for unit in units}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _execute(units: list[_Unit], executor: str, workers: int, scheduler: str) -> Iterator[tuple[_Unit, dict]]:
    if executor == "serial":
        return _serial(units)
    if executor == "processes":
        return _processes(units, workers)
    return _dask(units, workers, scheduler)


# -- the run directory: lock, task files, consolidation ----------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """A lock file in the run directory: refuses a second live run, takes over one left by a dead process.

    The file holds the owner's pid, host and start time. A lock whose pid no longer runs on this host is
    stale (its run was killed) and is taken over; a lock from another host cannot be checked and refuses.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": now_utc()}

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._create():
                return self
            holder = self._holder()
            if holder is None:  # released meanwhile
                continue
            if holder.get("host") != self.owner["host"] or _pid_alive(int(holder.get("pid", -1))):
                raise LockError(f"{self.path.parent}: another harmony run (pid {holder.get('pid')} on "
                                f"{holder.get('host')}, started {holder.get('started')}) is using this directory; "
                                f"wait for it to finish, or delete {self.path} if that run is gone")
            logger.warning("taking over the lock of a run that is gone: %s", holder)
            self.path.unlink(missing_ok=True)
        raise LockError(f"{self.path.parent}: cannot take the lock {self.path}; another run is starting")

    def _create(self) -> bool:
        """Write the lock beside it, then link it into place: the link fails if a lock exists (atomic)."""
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}")
        tmp.write_text(json.dumps(self.owner), encoding="utf-8")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None  # released meanwhile: retry
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"pid": -1, "host": self.owner["host"]}  # unreadable: not a live run's lock

    def __exit__(self, *exc: object) -> None:
        holder = self._holder()
        if holder is not None and holder.get("pid") == self.owner["pid"]:
            self.path.unlink(missing_ok=True)


def _task_path(out: Path, key: str) -> Path:
    return out / TASKS_DIR / f"{key}.parquet"


def _write_task(out: Path, task: Task, result: dict[str, Any] | str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harmony.extract import feature_rows, split_result

    failed = isinstance(result, str)
    extraction = split_result({} if failed else result)
    rows = feature_rows(extraction.features, case_id=task.case_id, site=task.site,
                        variant_id=task.variant_id, repeat=task.repeat)
    meta = {"key": task.key, "case_id": task.case_id, "variant_id": task.variant_id, "repeat": task.repeat,
            "status": FAILED if failed else OK, "error": result if failed else "",
            "diagnostics": extraction.diagnostics}
    table = pa.Table.from_pandas(rows, preserve_index=False)  # validated once, when consolidated
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    atomic_write(_task_path(out, task.key), lambda tmp: pq.write_table(table, tmp))


def _task_status(path: Path) -> dict | None:
    """The metadata of a task file, or None when it is unreadable (then the task runs again)."""
    import pyarrow.parquet as pq

    try:
        return json.loads(pq.read_schema(path).metadata[_META_KEY])
    except Exception as exc:  # a damaged file is not a finished task
        logger.warning("ignoring unreadable task file %s (%s)", path, exc)
        return None


def _finished(out: Path, tasks: list[Task], retry_failed: bool) -> dict[str, dict]:
    """The planned tasks that have a result file (failures too, unless ``retry_failed``)."""
    folder = out / TASKS_DIR
    for tmp in folder.glob(".*.tmp"):  # left by a killed write; we hold the lock, so nobody is writing
        tmp.unlink(missing_ok=True)
    present = {p.stem for p in folder.glob("*.parquet")} if folder.is_dir() else set()
    done = {}
    for task in tasks:
        if task.key in present and (meta := _task_status(_task_path(out, task.key))) is not None:
            if meta["status"] == OK or not retry_failed:
                done[task.key] = meta
    return done


def _consolidate(out: Path, tasks: list[Task]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """The features and failures tables, and per case the diagnostics its task files hold."""
    frames, failures, diagnostics = [], [], {}
    for task in tasks:
        path = _task_path(out, task.key)
        meta = _task_status(path)
        if meta is None:
            raise HarmonyError(f"{path}: the result of task {task} is missing or unreadable; re-run to make it")
        if meta["status"] == FAILED:
            failures.append({schema.CASE_ID: task.case_id, schema.VARIANT_ID: task.variant_id,
                             schema.REPEAT: task.repeat, schema.ERROR: meta["error"]})
        else:
            frames.append(pd.read_parquet(path))
        if meta.get("diagnostics"):
            diagnostics[task.case_id] = meta["diagnostics"]
    features = pd.concat(frames, ignore_index=True) if frames else schema.FEATURES.empty()
    failed = pd.DataFrame(failures, columns=schema.FAILURES.names) if failures else schema.FAILURES.empty()
    return (schema.FEATURES.validate(features, source=str(out)), schema.FAILURES.validate(failed, source=str(out)),
            diagnostics)


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
    from harmony.extract import make_extractor

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
