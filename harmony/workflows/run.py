"""`harmony run`: one experiment end to end (cohort, variants, extraction, reliability, harmonization, report).

Each stage writes its tables into the run directory and records in ``manifest.json`` the hash of its
inputs (its own settings, the hashes of the stages it reads, the content digests of the tables it reads and
the installed package versions, so an upgrade reruns what it could change) and the content digest of each
table it wrote. Re-running skips every stage whose input hash is unchanged and whose outputs are there with
the recorded digests; a table deleted or changed since is made again, and a table rebuilt with other content
reruns every stage that reads it. The extraction engine resumes task by task. The whole run holds the run
directory's lock (:class:`~harmony.core.lock.RunLock`): a second run into it is refused.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.cases import load_cases
from harmony.core.dicom.cache import source_digest
from harmony.core.dicom.convert import dicom_sources
from harmony.core.errors import ConfigError, HarmonyError
from harmony.core.files import (
    file_digest,
    read_json,
    read_table,
    stable_hash,
    write_table,
    write_text,
)
from harmony.core.lock import RunLock
from harmony.core.manifest import (
    MANIFEST_NAME,
    build_manifest,
    now_utc,
    versions,
    write_manifest,
)
from harmony.core.notices import WarningLog, collect_warnings
from harmony.core.progress import log_stage
from harmony.extraction.adapter import extraction_params
from harmony.extraction.engine import run_tasks
from harmony.harmonize.settings import combat_options, method_options
from harmony.perturb.design import expand_design
from harmony.perturb.variants import variants_from_table, variants_table
from harmony.phantoms.cohort import simulate_cohort
from harmony.phantoms.specs import load_cohort_spec
from harmony.report.page import render_report
from harmony.workflows.assess import OUTPUTS as RELIABILITY_OUTPUTS
from harmony.workflows.assess import run_reliability
from harmony.workflows.experiment import load_experiment
from harmony.workflows.harmonization import OUTPUTS as HARMONIZATION_OUTPUTS
from harmony.workflows.harmonization import run_harmonization
from harmony.workflows.layout import (
    COHORT_DIR,
    EXTRACTION_DIR,
    FIGURES_DIR,
    FILES,
    HARMONIZATION_DIR,
    NOT_RUN,
    RELIABILITY_DIR,
    load_run,
)

__all__ = ["RunSummary", "run_config", "run_experiment", "write_report"]

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: its directory, per-stage status (``done``, ``skipped`` or why not run) and counts.

    Parameters
    ----------
    run_dir : pathlib.Path
        The run directory (read its tables back with :func:`harmony.load_run`).
    stages : dict of str to str
        Per stage: ``"done"``, ``"skipped (up to date)"`` or ``"not run: <why>"``.
    tasks : dict of str to int
        The extraction's task counts (``total``, ``done``, ``failed``, ``resumed``).
    n_cases, n_variants, n_features : int
        What was extracted.
    n_stable : int or None
        Features judged stable (``None`` when reliability did not run).
    report : pathlib.Path or None
        The report page, when written.
    seconds : float
        Wall time.
    """

    run_dir: Path
    stages: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    n_cases: int = 0
    n_variants: int = 0
    n_features: int = 0
    n_stable: int | None = None
    report: Path | None = None
    seconds: float = 0.0


class _Run:
    """The state of one `harmony run`: config, run directory, the manifest's stage records."""

    def __init__(self, config: Mapping[str, Any], *, progress: bool | None):
        self.config = config
        self.dir = Path(config["experiment"]["out"])
        self.progress = progress
        self.seed = int(config["experiment"]["seed"])
        self.started, self.clock = now_utc(), time.perf_counter()
        #: the stage records of the previous run into this directory, if any
        self.records: dict[str, dict[str, Any]] = _previous_stages(self.dir / MANIFEST_NAME)
        self.hashes: dict[str, str] = {}
        self.summary = RunSummary(self.dir)
        self.seeds: dict[str, Any] = {"experiment": self.seed}
        self.versions = versions()  # an upgraded library reruns every stage it could change
        #: the warnings of the stages run now (a skipped stage's stay in its record)
        self.warnings = WarningLog()

    def path(self, key: str) -> Path:
        return self.dir / FILES[key]

    def content(self, *keys: str) -> dict[str, str]:
        """The content digests of the run's tables ``keys``: what a stage reading them chains on."""
        return {key: file_digest(self.path(key)) for key in keys if self.path(key).is_file()}

    def stage(self, name: str, inputs: Any, outputs: Sequence[Path],
              work: Callable[[], dict[str, Any] | None]) -> None:
        """Run ``work`` unless its input hash is unchanged and its outputs have their recorded digests; record it."""
        digest = stable_hash({"inputs": inputs, "versions": self.versions}, length=32)
        self.hashes[name] = digest
        record = self.records.get(name) or {}
        if record.get("input_hash") == digest:
            changed = _changed_outputs(self.dir, record, outputs)
            if not changed:
                log_stage("stage %s: up to date, skipped", name)
                self.summary.stages[name] = "skipped (up to date)"
                return
            logger.warning("stage %s: %s is missing or changed since this stage wrote it; running the stage again",
                           name, changed[0])
        log_stage("stage %s: started", name)
        clock = time.perf_counter()
        with collect_warnings() as log:
            extra = work() or {}
        seconds = time.perf_counter() - clock
        log_stage("stage %s: done in %.1f s", name, seconds)
        self.warnings.merge(log)
        self.records[name] = {"input_hash": digest, "finished": now_utc(), "seconds": round(seconds, 3),
                              **({"warnings": log.records()} if len(log) else {}), **extra,
                              "outputs": {_relative(self.dir, p): file_digest(p) for p in outputs if p.is_file()}}
        self.summary.stages[name] = "done"
        self.write_manifest()

    def not_run(self, name: str, why: str) -> None:
        self.records[name] = {NOT_RUN: why}
        self.summary.stages[name] = f"not run: {why}"

    def write_manifest(self) -> None:
        self.summary.seconds = time.perf_counter() - self.clock
        write_manifest(self.dir, build_manifest(
            command="run", config=dict(self.config), seeds=self.seeds, started=self.started, tasks=self.summary.tasks,
            stages=self.records, wall_seconds=round(self.summary.seconds, 3)))


def _previous_stages(manifest: Path) -> dict[str, dict[str, Any]]:
    """The stage records of an earlier run's manifest; none when it is absent or not a run's manifest."""
    if not manifest.is_file():
        return {}
    try:
        stages = read_json(manifest).get("stages") or {}
    except (HarmonyError, AttributeError):
        stages = None
    if not isinstance(stages, dict) or not all(isinstance(r, dict) for r in stages.values()):
        logger.warning("%s: not a readable run manifest; every stage runs again (extraction resumes)", manifest)
        return {}
    return stages


def _relative(run_dir: Path, path: Path) -> str:
    return path.relative_to(run_dir).as_posix()


def _changed_outputs(run_dir: Path, record: Mapping[str, Any], outputs: Sequence[Path]) -> list[str]:
    """The outputs that are missing or whose content differs from the digest the stage recorded."""
    recorded = record.get("outputs")
    recorded = recorded if isinstance(recorded, dict) else {}
    return [_relative(run_dir, p) for p in outputs
            if not p.is_file() or recorded.get(_relative(run_dir, p)) != file_digest(p)]


def _load_cases(run: _Run) -> pd.DataFrame:
    section = run.config["cases"]
    if section["csv"]:
        return load_cases(section["csv"], label=section["label"], tolerance=section["geometry_tolerance"])
    return simulate_cohort(_cohort_spec(run.config), run.dir / COHORT_DIR, progress=run.progress)


def _cohort_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated cohort spec with its scanner profiles; inline paths are relative to the config's folder."""
    return load_cohort_spec(config["cases"]["cohort"], base_dir=Path(config.get("_source", ".")).parent)


def _cases_inputs(run: _Run) -> dict[str, Any]:
    section = run.config["cases"]
    if section["csv"]:
        # the images' content too: an image replaced in place under the same name must be extracted again
        listed = load_cases(section["csv"], check_files=False)
        files = {p: source_digest(p) for p in (*listed[schema.IMAGE], *listed[schema.MASK]) if Path(p).exists()}
        return {"csv": section["csv"], "content": file_digest(section["csv"]), "files": files,
                "label": section["label"], "tolerance": section["geometry_tolerance"]}
    spec = _cohort_spec(run.config)
    run.seeds["cohort"] = spec["cohort"]["seed"]
    return {"cohort": {k: v for k, v in spec.items() if k != "_source"}}


def run_experiment(config: Mapping[str, Any], *, progress: bool | None = None) -> RunSummary:
    """Run every stage of a validated experiment config: ``harmony run``.

    The stages are cases (a cases CSV, or a simulated cohort), variants (the perturbation design),
    extraction (:func:`harmony.run_tasks`), reliability, harmonization (with more than one site) and the
    report. A stage whose outputs exist and whose inputs are unchanged (recorded in ``manifest.json``) is
    skipped, so a re-run does only what changed, and an interrupted extraction resumes task by task.

    Parameters
    ----------
    config : mapping
        A validated experiment config (:func:`harmony.load_experiment`).
    progress : bool, optional
        Progress bars (``None``: only on a terminal).

    Returns
    -------
    RunSummary
        The tables, the manifest and the report are in ``config["experiment"]["out"]``.

    Raises
    ------
    ConfigError
        The config gives neither cases nor a cohort, or bad extraction settings (before any work).
    CaseError
        A case cannot be used.
    LockError
        Another live run holds the run directory.

    Examples
    --------
    The quickstart on 12 subjects (not run as a doctest)::

        config = load_experiment("quickstart", ["cases.cohort.cohort.subjects=12", "experiment.out=reports/qs12"])
        summary = run_experiment(config)
        summary.stages["extraction"]  # 'done'; a second call skips every stage: 'skipped (up to date)'
        tables = load_run(summary.run_dir)  # the run's tables: tables["reliability"], tables["harmonized"] ...
    """

    if not config["cases"]["csv"] and not config["cases"]["cohort"]:
        raise ConfigError(f"{config.get('_source', '<config>')}: cases: give cases.csv (your images) or "
                          "cases.cohort (a simulated cohort)")
    params = extraction_params(config)
    with RunLock(config["experiment"]["out"]):  # every stage: a second run into this directory is refused
        run = _Run(config, progress=progress)
        _run_stages(run, config, params)
    return run.summary


def _run_stages(run: _Run, config: Mapping[str, Any], params: dict[str, Any]) -> None:
    progress = run.progress

    def make_cases():
        cases = _load_cases(run)
        write_table(cases, run.path("cases"), schema.CASES)
        return dicom_sources(cases)  # the source UIDs of DICOM cases, into the manifest

    run.stage("cases", _cases_inputs(run), [run.path("cases")], make_cases)
    cases = read_table(run.path("cases"), schema.CASES)

    def make_variants():
        variants = expand_design(config["perturbations"], seed=run.seed, base_params=params,
                                 source=f"{config.get('_source', '<config>')}: perturbations")
        write_table(variants_table(variants), run.path("variants"), schema.VARIANTS)

    run.stage("variants", {"design": config["perturbations"], "seed": run.seed, "params": params},
              [run.path("variants")], make_variants)
    variants = variants_from_table(read_table(run.path("variants"), schema.VARIANTS), source=str(run.path("variants")))

    eng = config["engine"]

    def extract():
        result = run_tasks(cases, variants, params, run.dir / EXTRACTION_DIR, repeats=eng["repeats"],
                           executor=eng["executor"], workers=eng["workers"], scheduler=eng["scheduler"],
                           label=config["cases"]["label"], progress=progress,
                           retry_failed=eng["retry_failed"], command="run", keep_features=False,
                           threads_per_worker=eng["threads_per_worker"])
        return {"tasks": {"total": result.total, "done": result.done, "failed": result.failed,
                          "resumed": result.resumed}, "engine": result.diagnostics}

    run.stage("extraction", {"upstream": [run.hashes["cases"], run.hashes["variants"]],
                             "content": run.content("cases", "variants"), "params": params,
                             "repeats": eng["repeats"], "label": config["cases"]["label"]},
              [run.path("features"), run.path("failures")], extract)
    run.summary.tasks = dict(run.records["extraction"].get("tasks", {}))
    run.summary.n_cases, run.summary.n_variants = len(cases), len(variants)
    run.summary.n_features = _count_features(run.path("features"))

    if len(variants) > 1:
        def assess():
            results = run_reliability(run.path("features"), run.dir / RELIABILITY_DIR,
                                      variants_path=run.path("variants"), settings=config["reliability"],
                                      seed=run.seed, progress=progress, cases=cases)
            verdicts = results["verdicts"]
            return {"features": len(verdicts), "stable": int(verdicts[schema.STABLE].sum())}

        run.seeds["reliability_bootstrap"] = run.seed
        run.stage("reliability", {"upstream": run.hashes["extraction"], "content": run.content("features", "variants"),
                                  "settings": config["reliability"], "seed": run.seed},
                  [run.dir / RELIABILITY_DIR / name for name in RELIABILITY_OUTPUTS.values()], assess)
        run.summary.n_stable = run.records["reliability"].get("stable")
    else:
        run.not_run("reliability", "the design has no perturbation (only the original variant)")

    settings = config["harmonization"]
    batch = settings["batch"]
    n_batches = cases[batch].nunique() if batch in cases.columns else 0
    if not settings["enabled"]:
        run.not_run("harmonization", "disabled in the config")
    elif n_batches < 2:
        run.not_run("harmonization", f"a single {batch} in the cohort")
    else:
        def harmonize_stage():
            features = read_table(run.path("features"), schema.FEATURES)  # only this stage needs it all
            metrics = run_harmonization(features, run.dir / HARMONIZATION_DIR, cases, batch=batch,
                                        covariates=settings["covariates"], random_state=run.seed,
                                        method=settings["method"], method_options=method_options(settings),
                                        **combat_options(settings))
            summary = metrics["summary"]
            return {"summary": {f"{row.metric}[{row.stage}]": row.estimate for row in summary.itertuples()}}

        run.seeds["site_classifier_cv"] = run.seed
        run.stage("harmonization", {"upstream": [run.hashes["cases"], run.hashes["extraction"]],
                                    "content": run.content("cases", "features"), "settings": settings,
                                    "seed": run.seed},
                  [run.dir / HARMONIZATION_DIR / name for name in HARMONIZATION_OUTPUTS.values()], harmonize_stage)

    if config["report"]["enabled"]:
        run.write_manifest()  # the report shows this run's manifest
        tables = [key for key in FILES if key != "report"]
        run.stage("report", {"upstream": run.hashes, "content": run.content(*tables), "config": _what(config)},
                  [run.path("report")], lambda: {"path": str(write_report(run.dir))})
        run.summary.report = run.path("report")
    else:
        run.not_run("report", "disabled in the config")
    run.write_manifest()


def _count_features(path: Path) -> int:
    """Distinct features of a features table, reading its feature column only."""
    import pyarrow.parquet as pq

    return len(pq.read_table(path, columns=[schema.FEATURE]).column(0).unique())


#: Engine settings that change how a run executes, not what it computes: never part of a stage's hash.
_HOW = ("executor", "workers", "scheduler", "threads_per_worker")


def _what(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without what does not change results (its file's location, the executor)."""
    out = {k: v for k, v in config.items() if k != "_source"}
    out["engine"] = {k: v for k, v in config["engine"].items() if k not in _HOW}
    return out


def run_config(path: str | os.PathLike, overrides: Sequence[str] = (), *, out: str | None = None,
               progress: bool | None = None) -> RunSummary:
    """Load an experiment config (with ``--set`` overrides and an optional output directory) and run it.

    Parameters
    ----------
    path : str or os.PathLike
        An experiment TOML, or a built-in name (``quickstart``).
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts (``--set``).
    out : str, optional
        The run directory (``--out``); default ``experiment.out``, else ``reports/<name>``.
    progress : bool, optional
        Progress bars (``None``: only on a terminal).

    Returns
    -------
    RunSummary

    Raises
    ------
    ConfigError, CaseError, LockError
        See :func:`load_experiment` and :func:`run_experiment`.

    Examples
    --------
    ``harmony run experiments/quickstart.toml --set cases.cohort.cohort.subjects=12 --out reports/qs12``::

        summary = run_config("quickstart", ["cases.cohort.cohort.subjects=12"], out="reports/qs12")
        summary.report  # PosixPath('reports/qs12/report.html')
    """
    overrides = list(overrides) + ([f"experiment.out={_toml_string(out)}"] if out else [])
    return run_experiment(load_experiment(path, overrides), progress=progress)


def _toml_string(text: str) -> str:
    """A TOML basic string, so an output path is never read as a number or a table by ``--set``."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``<run_dir>/report.html`` (and ``<run_dir>/figures/*.png``) from the run's tables; return its path.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory (:func:`harmony.load_run` reads its tables).

    Returns
    -------
    pathlib.Path
        The report page: one self-contained HTML file.
    """
    run_dir = Path(run_dir)
    figures_dir = run_dir / FIGURES_DIR
    for stale in figures_dir.glob("*.png"):  # an earlier report's figures that this one may not redraw
        stale.unlink()
    page = render_report(load_run(run_dir), figures_dir)
    return write_text(run_dir / FILES["report"], page)
