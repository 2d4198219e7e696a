"""The single-stage commands (``harmony extract``, ``phantoms``, ``perturb``, ``harmonize``): read the user's
files, run one stage, write its tables and manifest. The CLI parses arguments and calls these.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.cases import load_cases, read_cases
from harmony.core.config import apply_overrides, load
from harmony.core.errors import HarmonyError
from harmony.core.files import read_table, write_table, write_text
from harmony.core.lock import RunLock
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from harmony.core.notices import collect_warnings
from harmony.core.resources import resolve
from harmony.core.wide import is_long_table, read_wide, table_columns, write_wide
from harmony.extraction.adapter import make_extractor
from harmony.extraction.engine import RunResult, run_tasks
from harmony.extraction.params import load_params, resolve_label
from harmony.extraction.taskfiles import FAILURES_NAME
from harmony.harmonize.methods import load_model
from harmony.perturb.batch import perturb_cases
from harmony.perturb.design import DESIGN, expand_design
from harmony.perturb.variants import variants_from_table, variants_table
from harmony.phantoms.cohort import simulate_cohort
from harmony.phantoms.specs import load_cohort_spec
from harmony.workflows.harmonization import (
    run_harmonization,
    write_harmonization_report,
)
from harmony.workflows.layout import FILES

__all__ = ["DROPPED_NAME", "extract_cases", "simulate_phantoms", "PerturbResult", "perturb_study", "harmonize_table"]

#: What ``harmony harmonize`` dropped from a wide table, and why: ``kind, name, reason`` (written when any).
DROPPED_NAME = "dropped.csv"


def extract_cases(cases_csv: str | os.PathLike, params_path: str | os.PathLike, out: str | os.PathLike, *,
                  overrides: Sequence[str] = (), label: int | None = None,
                  variants_path: str | os.PathLike | None = None, repeats: int = 1, executor: str = "processes",
                  workers: int = 0, scheduler: str = "", retry_failed: bool = False,
                  progress: bool | None = None, threads_per_worker: int = 0) -> RunResult:
    """``harmony extract``: every case of a cases CSV (x every variant of a variants table) into ``out``.

    Parameters
    ----------
    cases_csv : str or os.PathLike
        A cases CSV (:func:`harmony.load_cases`).
    params_path : str or os.PathLike
        A pyradiomics parameter file, or a built-in name.
    out : str or os.PathLike
        The output directory.
    overrides : sequence of str, default ()
        ``section.key=value`` texts applied to the parameters (``--set setting.binWidth=10``).
    label : int, optional
        The mask label (default: the parameters', else 1).
    variants_path : str or os.PathLike, optional
        A variants table (``harmony perturb``'s ``variants.parquet``); default the original only.
    repeats, executor, workers, scheduler, retry_failed, progress, threads_per_worker
        See :func:`harmony.run_tasks`.

    Returns
    -------
    RunResult
        See :func:`harmony.run_tasks`.

    Raises
    ------
    ConfigError
        Bad parameters (before any image is read).
    CaseError
        A case cannot be used.
    """
    params, _ = apply_overrides(load_params(resolve(params_path, "params")), overrides)
    make_extractor(params, source=str(params_path))  # fail on bad settings before reading any image
    label = resolve_label(params, label)
    cases = load_cases(cases_csv, label=label)
    variants = None
    if variants_path:
        variants = variants_from_table(read_table(variants_path, schema.VARIANTS), source=str(variants_path))
    return run_tasks(cases, variants, params, out, repeats=repeats, executor=executor, workers=workers,
                     scheduler=scheduler, label=label, retry_failed=retry_failed, progress=progress,
                     threads_per_worker=threads_per_worker)


def simulate_phantoms(spec_path: str | os.PathLike, out: str | os.PathLike, *, overrides: Sequence[str] = (),
                      seed: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    """``harmony phantoms``: simulate a cohort spec (a file or a built-in name) into ``out``; its cases table.

    Parameters
    ----------
    spec_path : str or os.PathLike
        A cohort TOML, or a built-in name (``cohort_demo``).
    out : str or os.PathLike
        The output directory (images, ``cases.csv``, ``cohort.json``, ``manifest.json``).
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts applied to the spec.
    seed : int, optional
        Overrides ``cohort.seed``.
    progress : bool, optional
        A progress bar over the subjects.

    Returns
    -------
    DataFrame
        The cases table (see :func:`harmony.simulate_cohort`).

    Raises
    ------
    ConfigError
        The spec does not validate.
    """
    started = now_utc()
    spec = load_cohort_spec(spec_path, overrides)
    seed = spec["cohort"]["seed"] if seed is None else seed
    with RunLock(out):
        cases = simulate_cohort(spec, out, seed=seed, progress=progress)
        write_manifest(out, build_manifest(command="phantoms", config=spec, seeds={"cohort": seed}, started=started,
                                           tasks={"total": len(cases), "done": len(cases), "failed": 0}))
    return cases


@dataclass
class PerturbResult:
    """What ``harmony perturb`` made: the variants, the cases and the (case, variant) pairs that failed.

    Parameters
    ----------
    variants : list of Variant
        The design's variants.
    cases : DataFrame
        The cases table.
    failures : DataFrame
        The (case, variant) pairs that could not be made (schema.FAILURES).
    out_dir : pathlib.Path
        The output directory.
    """

    #: File names in ``out_dir``.
    VARIANTS, FAILURES = FILES["variants"], FAILURES_NAME

    variants: list
    cases: pd.DataFrame
    failures: pd.DataFrame
    out_dir: Path


def perturb_study(cases_csv: str | os.PathLike, design_path: str | os.PathLike, out: str | os.PathLike, *,
                  seed: int = 0, params_path: str | os.PathLike | None = None, label: int = 1,
                  save_images: bool = False, full_images: bool = False, overrides: Sequence[str] = (),
                  progress: bool | None = None) -> PerturbResult:
    """``harmony perturb``: expand a design (a file or a built-in name) and make every variant of every case.

    Writes ``variants.parquet``, ``failures.parquet``, ``manifest.json`` and, with ``save_images``, the
    made images (:func:`~harmony.perturb.batch.perturb_cases`).

    Parameters
    ----------
    cases_csv : str or os.PathLike
        A cases CSV.
    design_path : str or os.PathLike
        A design TOML, or a built-in name (``robustness``).
    out : str or os.PathLike
        The output directory.
    seed : int, default 0
        The experiment seed of the design's random specs.
    params_path : str or os.PathLike, optional
        The base pyradiomics parameters (a bin width equal to theirs is the original).
    label : int, default 1
        The mask label.
    save_images, full_images : bool, default False
        See :func:`~harmony.perturb.batch.perturb_cases`.
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts applied to the design.
    progress : bool, optional
        A progress bar.

    Returns
    -------
    PerturbResult

    Raises
    ------
    ConfigError
        The design or the parameters do not validate.
    CaseError
        A case cannot be used.
    """
    started = now_utc()
    design_file = resolve(design_path, "design")
    design = load(design_file, DESIGN, overrides)
    params = load_params(resolve(params_path, "params")) if params_path else None
    variants = expand_design(design, seed=seed, base_params=params, source=str(design_file))
    cases = load_cases(cases_csv, label=label)
    out = Path(out)
    with RunLock(out):
        write_table(variants_table(variants), out / PerturbResult.VARIANTS, schema.VARIANTS)
        failures = perturb_cases(cases, variants, out_dir=out, save_images=save_images, full_images=full_images,
                                 label=label, progress=progress)
        write_table(failures, out / PerturbResult.FAILURES, schema.FAILURES)
        total = len(cases) * len(variants)
        write_manifest(out, build_manifest(
            command="perturb", config={"design": design, "params": params, "label": label,
                                       "cases": str(Path(cases_csv).resolve())},
            seeds={"experiment": seed}, started=started,
            tasks={"total": total, "done": total - len(failures), "failed": len(failures)}, n_variants=len(variants)))
    return PerturbResult(variants, cases, failures, out)


def harmonize_table(features_path: str | os.PathLike, out: str | os.PathLike, *,
                    cases_path: str | os.PathLike | None = None, batch: str | None = None,
                    covariates: Sequence[str] | None = None, model_path: str | os.PathLike | None = None,
                    combat_options: dict[str, Any] | None = None, n_splits: int = 5,
                    random_state: int = 0, id_column: str | None = None, missing: str = "stop",
                    feature_columns: Sequence[str] | None = None, method: str = "combat",
                    method_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``harmony harmonize``: fit a harmonizer (or apply the saved model), measure the site effect, write the page.

    Besides the tables of :func:`~harmony.workflows.harmonization.run_harmonization`, ``out`` gets ``report.html``
    (the harmonization section of the report, with figures and the warnings raised).

    The features table is harmony's long table (``case_id, site, variant_id, repeat, feature, value``) or a
    wide one (one row per subject, the batch and covariates as columns of the same file, read by
    :func:`~harmony.core.wide.read_wide`); a wide table's harmonized values are also written as a wide table
    in its own format (``harmonized.csv`` for a CSV, and so on).

    Parameters
    ----------
    features_path : str or os.PathLike
        A features table (Parquet, CSV or TSV), long or wide.
    out : str or os.PathLike
        The output directory (see :func:`~harmony.workflows.harmonization.run_harmonization`).
    cases_path : str or os.PathLike, optional
        For a long table: a cases CSV or Parquet file (image files not checked) with batch, covariates and
        truth columns. A wide table holds them itself.
    batch : str, optional
        The batch column; default ``site``.
    id_column : str, optional
        A wide table's subject id column (required for a wide table).
    missing : {"stop", "drop-features", "drop-subjects"}, default "stop"
        A wide table's missing-value policy (:data:`~harmony.core.wide.MISSING_POLICIES`).
    feature_columns : sequence of str, optional
        A wide table's feature columns (default: every numeric column but the id, batch and covariates).
    covariates : sequence of str, optional
        Covariates whose effects ComBat keeps.
    model_path : str or os.PathLike, optional
        A saved model (``model.json``) to apply instead of fitting one.
    combat_options : dict, optional
        :class:`~harmony.harmonize.ComBat` parameters; a saved model fixes them, so giving both is an error.
    n_splits : int, default 5
        Folds of the cross-validated site classifier.
    random_state : int, default 0
        Seed of its folds.
    method : str, default "combat"
        The harmonization method (:data:`~harmony.harmonize.settings.METHODS`).
    method_options : dict, optional
        Its options (the ``[harmonization.<method>]`` table).

    Returns
    -------
    dict
        See :func:`~harmony.workflows.harmonization.run_harmonization`; for a wide table also ``wide``
        (the :class:`~harmony.core.wide.WideTable` read) and ``wide_path`` (the harmonized wide file).

    Raises
    ------
    HarmonyError
        Both ``model_path`` and ``combat_options``, a wide table without ``id_column`` or with a
        ``cases_path``, or inputs ComBat cannot use.
    SchemaError
        A table cannot be read.
    """
    batch = batch or schema.SITE
    wide = None
    if id_column is None and not is_long_table(table_columns(features_path)):
        raise HarmonyError(f"{features_path}: a wide table (no 'case_id', 'feature' and 'value' columns): give "
                           "--id COLUMN, the column of subject ids")
    if id_column is not None:
        if cases_path:
            raise HarmonyError(f"--cases {cases_path}: a wide table holds its batch and covariates itself; drop --cases")
        wide = read_wide(features_path, id_column=id_column, batch=batch, covariates=covariates or (),
                         features=feature_columns, missing=missing)
        features, cases, batch = wide.features, wide.cases, schema.SITE
    else:
        features = read_table(features_path, schema.FEATURES)
        cases = read_cases(cases_path) if cases_path else None
    options = dict(combat_options or {})
    if model_path:
        if options or method_options:
            raise HarmonyError(f"--model {model_path}: the saved model fixes the method and its options; drop "
                               f"{sorted(options) + sorted(method_options or {})}")
        options = {"model": load_model(model_path)}
    else:
        options.update(method=method, method_options=method_options)
    with collect_warnings() as log:
        results = run_harmonization(features, out, cases, batch=batch, covariates=covariates, n_splits=n_splits,
                                    random_state=random_state, **options)
        write_harmonization_report(out, results, log)
    if wide is not None:
        harmonized = results["harmonized"]
        combat = harmonized[harmonized[schema.STAGE] == schema.STAGES[-1]]
        suffix = Path(features_path).suffix.lower()
        results["wide"] = wide
        results["wide_path"] = write_wide(combat, wide, Path(out) / f"harmonized{suffix}")
        dropped = [{"kind": "subject", "name": k, "reason": v} for k, v in wide.dropped_subjects.items()]
        dropped += [{"kind": "feature", "name": k, "reason": v} for k, v in wide.dropped_features.items()]
        dropped += [{"kind": "column skipped", "name": k, "reason": v} for k, v in wide.skipped_columns.items()]
        if dropped:
            write_text(Path(out) / DROPPED_NAME, pd.DataFrame(dropped).to_csv(index=False))
    return results
