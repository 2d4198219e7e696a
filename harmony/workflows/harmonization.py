"""The harmonization stage (``harmony harmonize``): fit or apply, measure, write the outputs and a manifest."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import clone

from harmony.core import schema
from harmony.core.files import read_json, write_json, write_table, write_text
from harmony.core.lock import RunLock
from harmony.core.manifest import MANIFEST_NAME, build_manifest, now_utc, write_manifest
from harmony.core.notices import WarningLog
from harmony.harmonize import metrics as hm
from harmony.harmonize.features import harmonization_inputs, harmonize_features
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.methods import (
    make_harmonizer,
    method_of,
    model_batch_columns,
    model_covariates,
)
from harmony.report.page import render_harmonization_report

__all__ = ["OUTPUTS", "run_harmonization", "REPORT_NAME", "write_harmonization_report"]

#: Files :func:`run_harmonization` writes into its output directory.
OUTPUTS = {"harmonized": "harmonized.parquet", "model": "model.json", "site_effects": "site_effects.parquet",
           "summary": "harmonization_summary.parquet", "truth_correlation": "truth_correlation.parquet",
           "covariate_effects": "covariate_effects.parquet"}
#: The page :func:`write_harmonization_report` writes (figures beside it in ``figures/``).
REPORT_NAME = "report.html"


def run_harmonization(features: pd.DataFrame, out_dir: str | os.PathLike, cases: pd.DataFrame | None = None, *,
                      batch: str = schema.SITE, covariates: Sequence[str] | None = None, model: Any = None,
                      method: str = "combat", method_options: dict[str, Any] | None = None, n_splits: int = 5,
                      random_state: int = 0, **combat_kwargs: Any) -> dict[str, pd.DataFrame]:
    """Harmonize (fit, or apply ``model``), measure, and write :data:`OUTPUTS` and a manifest into ``out_dir``.

    The model file records the method (``"method"`` beside the estimator's own ``format``).

    Parameters
    ----------
    features : DataFrame
        A features table (schema.FEATURES); ComBat is fitted on the original variant's rows.
    out_dir : str or os.PathLike
        Where to write the outputs.
    cases : DataFrame, optional
        The cases table: the ``batch`` column (when not ``site``), the covariates and any ``truth_*``
        columns.
    batch : str, default "site"
        The batch column.
    covariates : sequence of str, optional
        Covariate columns of ``cases`` whose effects ComBat keeps; with ``model`` they default to the
        model's (others are an error), otherwise to none.
    model : estimator, optional
        A fitted model (of any method of :mod:`harmony.harmonize.methods`) to apply instead of fitting one.
    method : str, default "combat"
        The method fitted when no ``model`` is given (:data:`~harmony.harmonize.settings.METHODS`).
    method_options : dict, optional
        Its ``[harmonization.<method>]`` options (e.g. ``{"smooth": ["age"]}`` for ``gam``); Nested and GMM
        ComBat take their batch variables from ``batch_columns`` (default: ``[batch]``).
    n_splits : int, default 5
        Folds of the cross-validated site classifier.
    random_state : int, default 0
        Seed of the classifier's folds.
    **combat_kwargs
        :class:`harmony.ComBat` parameters the method takes (not with ``model``).

    Returns
    -------
    dict of str to DataFrame
        ``harmonized`` (schema.HARMONIZED) and the metrics tables of
        :func:`harmony.harmonize.metrics.harmonization_metrics`.

    Raises
    ------
    HarmonizationError
        Both ``model`` and options, covariates the model was not fitted with, options the method does not
        take, or inputs it cannot use.
    LockError
        Another live run holds ``out_dir``.
    """

    started = now_utc()
    out = Path(out_dir)
    with RunLock(out):  # refused while another run writes this folder (or the run folder it is in)
        if model is None:
            if covariates is None:
                covariates = []
            options = dict(method_options or {})
            columns = list(options.get("batch_columns") or [batch]) if method in ("nested", "gmm") else None
            harmonizer = make_harmonizer(method, combat_kwargs, options, batch_columns=columns)
            _, X, labels, cov = harmonization_inputs(features, cases, batch=batch, covariates=covariates,
                                                     batch_columns=columns)
            model = harmonizer.fit(X, batch=labels, covariates=cov)
        elif combat_kwargs or method_options or method != "combat":
            raise HarmonizationError("give a fitted model or the method and its options, not both (got "
                                     f"{sorted(combat_kwargs) + sorted(method_options or {})})")
        method, columns = method_of(model), model_batch_columns(model)
        if covariates is None:
            covariates = model_covariates(model)
        harmonized = harmonize_features(features, cases, batch=batch, covariates=covariates, model=model,
                                        batch_columns=columns)
        in_fold_batch = None
        if columns is not None:
            in_fold_batch = harmonization_inputs(features, cases, batch=batch, batch_columns=columns)[2]
        metrics = hm.harmonization_metrics(harmonized, cases, batch=batch, covariates=covariates, n_splits=n_splits,
                                           random_state=random_state, harmonizer=clone(model),
                                           harmonizer_batch=in_fold_batch)
        write_table(harmonized, out / OUTPUTS["harmonized"], schema.HARMONIZED)
        write_json(out / OUTPUTS["model"], {**model.to_dict(), "method": method})
        specs = {"site_effects": hm.SITE_EFFECTS, "summary": hm.SUMMARY, "truth_correlation": hm.TRUTH_CORRELATION,
                 "covariate_effects": hm.COVARIATE_EFFECTS}
        for name, spec in specs.items():
            write_table(metrics[name], out / OUTPUTS[name], spec)
        n_cases = harmonized[schema.CASE_ID].nunique()
        write_manifest(out, build_manifest(
            command="harmonize", config={"method": method, "batch": batch, "covariates": covariates,
                                         **model.get_params(), "n_splits": n_splits}, seeds={"classifier_cv": random_state},
            started=started, tasks={"cases": n_cases, "features": int(model.n_features_in_)}, outputs=OUTPUTS))
    return {"harmonized": harmonized, **metrics}


def write_harmonization_report(out_dir: str | os.PathLike, results: dict[str, pd.DataFrame],
                               warnings_log: WarningLog | None = None) -> Path:
    """Write ``<out_dir>/report.html``: the harmonization section of the report, with the command's warnings.

    The warnings are also added to ``<out_dir>/manifest.json`` (key ``warnings``).

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output directory of :func:`run_harmonization` (its manifest is read and updated).
    results : dict of str to DataFrame
        What :func:`run_harmonization` returned.
    warnings_log : WarningLog, optional
        The warnings raised while harmonizing (:func:`harmony.core.notices.collect_warnings`).

    Returns
    -------
    pathlib.Path
        The page.
    """
    out = Path(out_dir)
    manifest_path = out / MANIFEST_NAME
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    if warnings_log is not None and len(warnings_log):
        manifest["warnings"] = warnings_log.records()
        write_manifest(out, manifest)
    for stale in (out / "figures").glob("*.png"):
        stale.unlink()
    return write_text(out / REPORT_NAME, render_harmonization_report(results, out / "figures", manifest))
