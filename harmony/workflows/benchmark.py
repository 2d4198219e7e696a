"""``harmony harmonizers compare`` and ``harmony harmonizers like``: the benchmark's I/O, pool, resume and report.

Each cell's result is its own small JSON file, ``<out>/cells/<key>.json``, written atomically when the cell
finishes; a run that is killed and started again skips the cells already on disk. Cells run in this process,
in spawned worker processes, or on a Dask cluster; results do not depend on which (each cell draws from its
own seed sequence).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.files import atomic_write, read_json, stable_hash, write_json, write_text
from harmony.core.manifest import versions
from harmony.core.progress import progress_bar
from harmony.extraction.adapter import extract, make_extractor
from harmony.harmonize.benchmark.adapters import (
    NEUROHARMONIZE,
    PEERS,
    available_methods,
)
from harmony.harmonize.benchmark.cells import (
    ACCURACY_MARGIN,
    BIAS_TOLERANCE,
    Cell,
    rank_methods,
    recommend,
    run_cell,
    sample_size_curve,
)
from harmony.harmonize.benchmark.cohorts import (
    DEFAULT_MATRIX,
    LARGE_MATRIX,
    ImageScenario,
)
from harmony.harmonize.benchmark.external import (
    NEUROHARMONIZE_PYTHON_ENV,
    RECIPE,
    check_neuroharmonize,
    configured_neuroharmonize,
)
from harmony.harmonize.benchmark.images import ImageCohort, image_cohort
from harmony.harmonize.benchmark.likeme import fit_cohort_model
from harmony.phantoms.cohort import simulate_cohort as simulate_phantoms
from harmony.phantoms.specs import SUBJECT
from harmony.report.benchmark import render_benchmark_report

__all__ = ["CURVE_SIZES", "EXECUTORS", "MATRICES", "compare_harmonizers", "like_my_data", "read_user_table"]

log = logging.getLogger(__name__)

#: The scenario matrices by name.
MATRICES = {"default": DEFAULT_MATRIX, "large": LARGE_MATRIX}
#: Where cells run.
EXECUTORS = ("serial", "processes", "dask")
#: Training subjects per site of the sample-size curve.
CURVE_SIZES = (3, 5, 10, 20, 50, 100)


def _execute(cells: list[Cell], executor: str, workers: int, scheduler: str) -> Iterator[dict]:
    if executor == "serial":
        yield from map(run_cell, cells)
    elif executor == "processes":
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = [pool.submit(run_cell, cell) for cell in cells]
            for future in as_completed(futures):
                yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        try:
            from dask.distributed import Client, LocalCluster
            from dask.distributed import as_completed as dask_completed
        except ImportError as exc:
            raise HarmonyError(f"executor 'dask' needs dask[distributed] ({exc})") from None
        cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        client = Client(scheduler or cluster)
        try:
            for future in dask_completed([client.submit(run_cell, cell, pure=False) for cell in cells]):
                yield future.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _run_cells(cells: list[Cell], out: Path, *, executor: str, workers: int, scheduler: str,
               progress: bool | None, desc: str) -> list[dict]:
    """Run the cells not yet on disk, writing each result as it finishes; return all results, in cell order."""
    if executor not in EXECUTORS:
        raise HarmonyError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if workers < 1:
        raise HarmonyError(f"workers must be >= 1, got {workers!r}")
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [cell for cell in cells if not (folder / f"{cell.key}.json").exists()]
    if len(todo) < len(cells):
        log.info("%s: %d of %d cells already done, resuming", desc, len(cells) - len(todo), len(cells))
    with progress_bar(total=len(cells), initial=len(cells) - len(todo), progress=progress, desc=desc,
                      unit="cell") as bar:
        for result in _execute(todo, executor, workers, scheduler):
            write_json(folder / f"{result['key']}.json", result)
            bar.update()
    return [read_json(folder / f"{cell.key}.json") for cell in cells]


def _tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy scores table and the cells table (status, reason, seconds)."""
    info = ["cohort", "method", "replicate", "n_train"]
    cells = pd.DataFrame([{k: r[k] for k in [*info, "status", "reason", "seconds"]} for r in results])
    scores = pd.DataFrame([{**{k: r[k] for k in info}, "seconds": r["seconds"], **s} for r in results
                           for s in r["scores"]], columns=[*info, "seconds", "split", "metric", "value"])
    for frame in (scores, cells):
        frame["seconds"] = frame["seconds"].astype(float)
    scores["value"] = scores["value"].astype(float)
    return scores, cells


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _methods(methods: list[str] | None, python: str) -> list[str]:
    known = available_methods(python)
    chosen = list(methods) if methods else known
    unknown = [m for m in chosen if m not in known]
    if unknown:
        hint = (f"; the neuroHarmonize methods need --neuroharmonize-python or ${NEUROHARMONIZE_PYTHON_ENV}"
                if not python and set(unknown) & set(NEUROHARMONIZE) else "")
        raise HarmonyError(f"--methods: unknown or not installed {unknown}; available: {known}{hint}")
    return chosen if "none" in chosen else ["none", *chosen]


def _neuroharmonize(python: str | os.PathLike | None, methods: list[str] | None) -> tuple[str, dict[str, str]]:
    """The checked Python of neuroHarmonize ("" when not configured, or no method of it was asked for) and the
    versions of its environment."""
    chosen = configured_neuroharmonize(python)
    if chosen is None or (methods and not set(methods) & set(NEUROHARMONIZE)):
        return "", {}
    return chosen, check_neuroharmonize(chosen)


def _versions(environment: dict[str, str]) -> dict[str, str]:
    """The manifest's versions, with neuroHarmonize's and its environment's when it ran."""
    if not environment:
        return versions()
    rest = " ".join(f"{k}={v}" for k, v in environment.items() if k != "neuroHarmonize")
    return {**versions(), "neuroHarmonize": environment["neuroHarmonize"], "neuroHarmonize_environment": rest}


def _notes(methods: list[str], configured: str | os.PathLike | None, environment: dict[str, str]) -> list[str]:
    notes = [f"peer {name} is not installed" for name, (module, _) in PEERS.items() if name not in methods
             and name not in available_methods()]
    if environment:
        notes.append(f"neuroHarmonize {environment['neuroHarmonize']} ran in its own environment (numpy "
                     f"{environment['numpy']}, statsmodels {environment['statsmodels']}): its GAM chooses each "
                     "feature's penalty on randomly shuffled cross-validation folds, drawn from seed 0, so its cells "
                     "repeat with this environment but may differ with other neuroHarmonize or statsmodels versions")
    elif configured_neuroharmonize(configured) is None:
        notes.append(f"neuroHarmonize is not configured (it pins numpy < 2, so it runs in an environment of its own): "
                     f"make one with `{RECIPE}` and pass --neuroharmonize-python .venv-nh/bin/python (or set "
                     f"${NEUROHARMONIZE_PYTHON_ENV})")
    else:
        notes.append("neuroHarmonize is configured but was not among the methods")
    return notes


def _image_cohort(scenario: ImageScenario, seed: int, out: Path, progress: bool | None) -> ImageCohort:
    """Render and extract the scenario's phantoms once per seed and spec; the table is kept in ``<out>/images/``."""
    what = stable_hash({"cohort": scenario.cohort_spec(), "params": scenario.extraction_params()}, length=8)
    path = out / "images" / f"{scenario.name}-seed{seed}-{what}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            cases = simulate_phantoms(scenario.cohort_spec(), tmp, seed=seed, progress=progress)
            extractor = make_extractor(scenario.extraction_params(), source=scenario.name)
            rows = [extract(image, mask, extractor).features for image, mask in
                    progress_bar(list(zip(cases[schema.IMAGE], cases[schema.MASK])), progress=progress,
                                 desc=f"{scenario.name} features", unit="case")]
        truth = [c for c in cases.columns if c.startswith(schema.TRUTH_PREFIX)]
        info = cases[[schema.SITE, SUBJECT, *scenario.covariates, *truth]].reset_index(drop=True)
        _write_parquet(pd.concat([pd.DataFrame(rows), info], axis=1), path)
    return image_cohort(pd.read_parquet(path), covariates=list(scenario.covariates), seed=seed)


def compare_harmonizers(out: str | os.PathLike, *, matrix: str = "default", methods: list[str] | None = None,
                        scenarios: list[str] | None = None, image: bool = True, replicates: int = 3, seed: int = 0,
                        executor: str = "processes", workers: int = 2, scheduler: str = "",
                        progress: bool | None = None, neuroharmonize_python: str | os.PathLike | None = None) -> dict:
    """Run every method over the scenario matrix and write tables, figures and the report to ``out``.

    Parameters
    ----------
    out : str or path-like
        Output folder (``cells/``, ``images/`` (the image-level scenario's features), ``scores.parquet``,
        ``cells.parquet``, ``ranked.parquet``, ``report.html``, ``figures/``, ``manifest.json``).
    matrix : {"default", "large"}, default "default"
    methods : list of str, optional
        Adapter names (default: all available); ``none`` is always added as the baseline.
    scenarios : list of str, optional
        Only these scenarios of the matrix.
    image : bool, default True
        Include the image-level scenario (phantoms rendered and extracted once per seed, kept in ``images/``).
    replicates : int, default 3
    seed : int, default 0
    executor : {"serial", "processes", "dask"}, default "processes"
    workers : int, default 2
    scheduler : str, default ""
        A Dask scheduler address (empty: a local cluster).
    progress : bool, optional
        Progress bar (None: on a terminal).
    neuroharmonize_python : str or path-like, optional
        A Python that has neuroHarmonize (default ``$HARMONY_NEUROHARMONIZE_PYTHON``); its adapters
        ``neuroHarmonize`` and ``neuroHarmonize-gam`` then run in it (:mod:`harmony.harmonize.benchmark.external`).

    Returns
    -------
    dict
        ``scores``, ``cells``, ``ranked`` (DataFrames) and ``recommendation`` (str).

    Raises
    ------
    HarmonyError
        An unknown matrix, scenario, method or executor, replicates < 1, or a neuroHarmonize Python that
        does not run it.
    """
    if matrix not in MATRICES:
        raise HarmonyError(f"--matrix must be one of {list(MATRICES)}, got {matrix!r}")
    if replicates < 1:
        raise HarmonyError(f"--replicates must be >= 1, got {replicates!r}")
    chosen = tuple(s for s in MATRICES[matrix] if image or not isinstance(s, ImageScenario))
    if scenarios:
        names = [s.name for s in chosen]
        unknown = [s for s in scenarios if s not in names]
        if unknown:
            raise HarmonyError(f"--scenarios: unknown {unknown}; the {matrix} matrix has {names}")
        chosen = tuple(s for s in chosen if s.name in scenarios)
    python, environment = _neuroharmonize(neuroharmonize_python, methods)
    methods = _methods(methods, python)
    out = Path(out)
    sources = {s.name: _image_cohort(s, seed, out, progress) for s in chosen if isinstance(s, ImageScenario)}
    cells = [Cell.of(s, m, r, seed, sources.get(s.name), neuroharmonize_python=python) for s in chosen
             for r in range(replicates) for m in methods]
    results = _run_cells(cells, out, executor=executor, workers=workers, scheduler=scheduler, progress=progress,
                         desc="harmonizers")
    scores, table = _tables(results)
    _never_applied(table, methods, f"the {matrix} matrix's scenarios {[s.name for s in chosen]}")
    ranked = rank_methods(scores)
    words = recommend(ranked)
    for name, frame in (("scores", scores), ("cells", table), ("ranked", ranked)):
        _write_parquet(frame, out / f"{name}.parquet")
    skipped = (table["status"] != "ok").sum()
    notes = [*_notes(methods, neuroharmonize_python, environment),
             (f"{skipped} of {len(table)} cells not applicable (see cells.parquet: e.g. a log transform of "
              "non-positive values)")]
    write_text(out / "report.html", render_benchmark_report(
        f"harmony harmonizers compare: {matrix} matrix", ranked, words, scores, out / "figures", notes=notes))
    write_json(out / "manifest.json", {"command": "harmonizers compare", "matrix": matrix, "replicates": replicates,
                                       "seed": seed, "methods": methods, "scenarios": [s.name for s in chosen],
                                       "versions": _versions(environment)})
    return {"scores": scores, "cells": table, "ranked": ranked, "recommendation": words}


def _never_applied(cells: pd.DataFrame, methods: list[str], what: str) -> dict[str, str]:
    """The methods that applied to no cell, each with its first reason; refused when no method but ``none`` applied
    (the cells stay on disk)."""
    status = cells.groupby("method", sort=False)["status"]
    never = status.apply(lambda s: (s != "ok").all())
    reasons = {m: cells.loc[cells["method"] == m, "reason"].iloc[0] for m in never.index[never]}
    if set(reasons) >= set(methods) - {"none"}:
        raise HarmonyError(f"{what}: no method applies: "
                           + ("; ".join(f"{m}: {r}" for m, r in reasons.items()) or "--methods names none but 'none'"))
    return reasons


def read_user_table(path: str | os.PathLike, *, cases_path: str | os.PathLike | None = None, site: str = schema.SITE,
                    covariates: list[str] | None = None,
                    subject: str = schema.CASE_ID) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """A user's features table, long (harmony's ``feature``/``value`` rows) or wide, as (features, site, covariates).

    Parameters
    ----------
    path : str or path-like
        ``.parquet`` or ``.csv``. Long: columns ``case_id, feature, value`` (plus ``site``; the ``original``
        variant and repeat 0 are kept when present). Wide: one row per subject, its site and covariates among
        the columns, every other numeric column a feature.
    cases_path : str or path-like, optional
        A cases table (``case_id`` and the site and covariate columns), joined on ``subject``.
    site : str, default "site"
    covariates : list of str, optional
    subject : str, default "case_id"

    Returns
    -------
    (DataFrame, ndarray, DataFrame)
        Wide features, site labels, covariates; rows aligned.

    Raises
    ------
    HarmonyError
        An unreadable file or a missing column, naming the file and the column.
    """
    def read(p) -> pd.DataFrame:
        p = Path(p)
        try:
            return pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
        except (OSError, ValueError) as exc:
            raise HarmonyError(f"{p}: cannot read the table ({exc})") from None

    table, covariates = read(path), list(covariates or [])
    if {schema.FEATURE, schema.VALUE} <= set(table.columns):
        for column, keep in ((schema.VARIANT_ID, schema.ORIGINAL), (schema.REPEAT, 0)):
            if column in table.columns and (table[column] == keep).any():
                table = table[table[column] == keep]
        if subject not in table.columns:
            raise HarmonyError(f"{path}: a long features table needs column {subject!r}")
        wide = table.pivot_table(index=subject, columns=schema.FEATURE, values=schema.VALUE, aggfunc="mean")
        meta = table.drop_duplicates(subject).set_index(subject).reindex(wide.index)
        meta = meta[[c for c in meta.columns if c not in (schema.FEATURE, schema.VALUE)]].reset_index()
        wide = wide.reset_index(drop=True)
    else:
        meta, wide = table, None
    if cases_path is not None:
        cases = read(cases_path)
        if subject not in cases.columns or subject not in meta.columns:
            raise HarmonyError(f"{cases_path}: joining the cases needs column {subject!r} in both tables")
        meta = meta[[subject]].merge(cases, on=subject, how="left", suffixes=("_features", ""))
    for column in [site, *covariates]:
        if column not in meta.columns:
            raise HarmonyError(f"{cases_path or path}: no column {column!r} (columns: {list(meta.columns)})")
    if wide is None:
        skip = {site, subject, *covariates, *(c for c in meta.columns if not pd.api.types.is_numeric_dtype(meta[c]))}
        wide = table[[c for c in table.columns if c not in skip]]
    return wide, meta[site].astype(str).to_numpy(), meta[covariates].reset_index(drop=True)


def like_my_data(features_path: str | os.PathLike, out: str | os.PathLike, *, cases_path: str | os.PathLike | None = None,
                 site: str = schema.SITE, covariates: list[str] | None = None, methods: list[str] | None = None,
                 replicates: int = 3, curve_replicates: int = 5, seed: int = 0, executor: str = "processes",
                 workers: int = 2, scheduler: str = "", progress: bool | None = None,
                 neuroharmonize_python: str | os.PathLike | None = None) -> dict:
    """Fit a generative model to the user's table, benchmark the methods on cohorts like it, and draw the curve.

    The methods run on cohorts with the user's median subjects per site; the best one (and plain ComBat)
    then runs with :data:`CURVE_SIZES` training subjects per site, ``curve_replicates`` seeds each.

    Parameters
    ----------
    features_path : str or path-like
        The user's features table (:func:`read_user_table`).
    out : str or path-like
        Output folder (as :func:`compare_harmonizers`, plus ``model.json`` and ``curve.parquet``).
    cases_path, site, covariates
        See :func:`read_user_table`.
    methods, replicates, seed, executor, workers, scheduler, progress, neuroharmonize_python
        See :func:`compare_harmonizers`.
    curve_replicates : int, default 5
        Seeds per point of the sample-size curve (its bootstrap resamples them).

    Returns
    -------
    dict
        ``ranked``, ``recommendation``, ``curve``, ``needed`` (a sentence), ``scores``.

    Raises
    ------
    HarmonyError
        Bad input (naming the file and what is wrong), too little data to model, or no method that applies to
        it (with each method's reason).
    """
    if replicates < 1 or curve_replicates < 2:
        raise HarmonyError(f"--replicates must be >= 1 and --curve-replicates >= 2, got {replicates!r}, "
                           f"{curve_replicates!r}")
    python, environment = _neuroharmonize(neuroharmonize_python, methods)
    wide, sites, covs = read_user_table(features_path, cases_path=cases_path, site=site, covariates=covariates)
    try:
        model = fit_cohort_model(wide, sites, covs)
    except ValueError as exc:
        raise HarmonyError(f"{features_path}: {exc}") from None
    out, methods = Path(out), _methods(methods, python)
    smooth = tuple(t["column"] for t in model.terms if t["kind"] == "linear")
    n_user = int(np.median(np.unique(sites, return_counts=True)[1]))
    name = "like-my-data"
    cells = [Cell(name, model, m, r, seed, n_user, 30, smooth=smooth, neuroharmonize_python=python)
             for r in range(replicates) for m in methods]
    scores, table = _tables(_run_cells(cells, out, executor=executor, workers=workers, scheduler=scheduler,
                                       progress=progress, desc="like my data"))
    never = _never_applied(table, methods, f"{features_path}: cohorts like this table")
    ranked = rank_methods(scores)
    words = recommend(ranked)
    best = ranked.loc[ranked["method"] != "none", "method"].iloc[0]
    curve_methods = list(dict.fromkeys([best, "combat"]))
    curve_cells = [Cell(f"{name} n={n}", model, m, r, seed, n, 30, smooth=smooth, neuroharmonize_python=python)
                   for n in CURVE_SIZES for r in range(curve_replicates) for m in curve_methods]
    curve_scores, curve_table = _tables(_run_cells(curve_cells, out, executor=executor, workers=workers,
                                                   scheduler=scheduler, progress=progress, desc="sample-size curve"))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    curve = pd.concat([sample_size_curve(part, rng=rng).assign(method=m)
                       for m, part in curve_scores.groupby("method", sort=False)], ignore_index=True)
    ours = curve[curve["method"] == best].sort_values("n_train")
    enough = ours[ours["enough"][::-1].cummin()[::-1]]  # enough at this size and every larger one
    needed = (f"With {best}, {int(enough['n_train'].min())} training subjects per site (and every larger size tried) "
              f"bring the held-back site effect to chance (its 95% interval reaches within {ACCURACY_MARGIN} of 1/k, "
              "or of the accuracy of the same subjects without their scanner where the biology differs by site) "
              f"while the covariate effects stay within {BIAS_TOLERANCE} SD; your table has {n_user} per site "
              "(median)." if not enough.empty else
              f"With {best}, no size of {list(CURVE_SIZES)} training subjects per site (and every larger one) brought "
              f"the held-back site effect to chance with the covariate effects kept: harmonize with care (your "
              f"table: {n_user} per site, median).")
    for frame_name, frame in (("scores", pd.concat([scores, curve_scores], ignore_index=True)), ("cells", table),
                              ("ranked", ranked), ("curve", curve)):
        _write_parquet(frame, out / f"{frame_name}.parquet")
    notes = [*_notes(methods, neuroharmonize_python, environment),
             (f"the model keeps {len(model.features)} features (of {wide.shape[1]}), "
              f"{sum(m == 'log' for m in model.marginal)} of them log-normal; sites: {model.batches['site']}; "
              f"covariates: {list(covs.columns)}"),
             *(f"{m} did not apply to cohorts like this table ({r})" for m, r in never.items()),
             *(f"sample-size curve, {m} with {n} training subjects per site: {len(part)} of {curve_replicates} "
               f"seeds could not be harmonized ({part['reason'].iloc[0]}); the point is of the others"
               for (m, n), part in curve_table[curve_table["status"] != "ok"].groupby(["method", "n_train"]))]
    write_text(out / "report.html", render_benchmark_report(
        f"harmony harmonizers like: {Path(features_path).name}", ranked, words, scores, out / "figures",
        curve=curve, needed=needed, notes=notes))
    write_json(out / "model.json", {"features": model.features, "marginal": model.marginal,
                                    "sites": model.batches["site"], "terms": model.terms})
    write_json(out / "manifest.json", {"command": "harmonizers like", "features": str(features_path),
                                       "replicates": replicates, "curve_replicates": curve_replicates, "seed": seed,
                                       "methods": methods, "versions": _versions(environment)})
    return {"ranked": ranked, "recommendation": words, "curve": curve, "needed": needed, "scores": scores}
