"""Gate baselines: extract the reference set once, store it, and check a new extraction against it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.cases import load_cases, write_cases
from harmony.core.errors import ConfigError, HarmonyError
from harmony.core.files import (
    file_digest,
    read_json,
    read_table,
    stable_hash,
    write_table,
)
from harmony.core.images import write_case
from harmony.core.lock import RunLock
from harmony.core.manifest import (
    MANIFEST_NAME,
    build_manifest,
    now_utc,
    versions,
    write_manifest,
)
from harmony.extraction.adapter import extraction_params
from harmony.extraction.engine import run_tasks
from harmony.gate.compare import (
    GateResult,
    compare_features,
    setting_changes,
    version_changes,
)
from harmony.gate.settings import PROCEDURAL_PHANTOMS
from harmony.perturb.design import expand_design
from harmony.perturb.variants import variants_from_table, variants_table
from harmony.phantoms.digital import ibsi_digital_phantom
from harmony.phantoms.render import render_phantom

__all__ = ["GateError", "BASELINE_FEATURES", "BASELINE_FAILURES", "BASELINE_VARIANTS", "BASELINE_CASES",
           "PHANTOM_DIR", "PHANTOM_SITE", "reference_spec", "design_variants", "write_reference_cases",
           "extract_reference_set", "create_baseline", "Baseline", "load_baseline", "check_baseline"]


class GateError(HarmonyError):
    """A baseline that cannot be used: missing files, changed inputs, an unreadable manifest."""


#: Files of a baseline directory (with ``manifest.json``).
BASELINE_FEATURES, BASELINE_FAILURES = "features.parquet", "failures.parquet"
#: The baseline's variants table, its cases CSV, and the folder of the built-in phantoms it wrote.
BASELINE_VARIANTS, BASELINE_CASES, PHANTOM_DIR = "variants.parquet", "cases.csv", "phantoms"
#: The ``site`` of the built-in phantoms in the reference set.
PHANTOM_SITE = "phantom"


def _builtin_phantoms() -> dict[str, Callable[[], tuple[Any, Any]]]:
    """Name -> function returning (image, mask) of every built-in reference phantom."""
    found: dict[str, Callable[[], tuple[Any, Any]]] = {"ibsi": ibsi_digital_phantom}
    for name, (spec, seed) in PROCEDURAL_PHANTOMS.items():
        found[name] = partial(render_phantom, spec, seed)
    return found


def reference_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """What defines the reference set (not how it is extracted): phantoms, user cases, design and seed.

    Parameters
    ----------
    config : mapping
        A validated experiment config (:func:`harmony.load_experiment`) with a ``[gate]`` section.

    Returns
    -------
    dict
        ``phantoms, cases_csv, perturbations, seed, label``: recorded in the baseline's manifest, so that a
        check can say when the config's reference set differs from the baseline's.

    Examples
    --------
    >>> config = {"gate": {"phantoms": ["ibsi"]}, "cases": {"csv": "", "label": 1}, "perturbations": None,
    ...           "experiment": {"seed": 0}}
    >>> reference_spec(config)
    {'phantoms': ['ibsi'], 'cases_csv': '', 'perturbations': None, 'seed': 0, 'label': 1}
    """
    return {
        "phantoms": list(config["gate"]["phantoms"]),
        "cases_csv": config["cases"]["csv"],
        "perturbations": config["perturbations"],
        "seed": config["experiment"]["seed"],
        "label": config["cases"]["label"],
    }


def design_variants(config: Mapping[str, Any], params: Mapping[str, Any]) -> pd.DataFrame:
    """The variants table (schema.VARIANTS) of the config's perturbation design; the original is always in it.

    Parameters
    ----------
    config : mapping
        A validated experiment config: its ``[perturbations]`` and ``experiment.seed``.
    params : mapping
        The base pyradiomics parameters (a bin width equal to the base one is the original).

    Returns
    -------
    DataFrame
        The variants table.

    Raises
    ------
    ConfigError
        The design does not validate.

    Examples
    --------
    >>> config = {"perturbations": {"grid": [{"bin_width": {"width": [10, 25]}}]}, "experiment": {"seed": 0}}
    >>> design_variants(config, {"setting": {"binWidth": 25}})["kind"].tolist()
    ['original', 'discretisation']
    """

    variants = expand_design(config["perturbations"] or {}, seed=config["experiment"]["seed"],
                             base_params=params, source=f"{config.get('_source', '<config>')}: perturbations")
    return variants_table(variants)


def _input_hashes(cases: pd.DataFrame) -> dict[str, dict[str, str]]:
    return {row[schema.CASE_ID]: {what: file_digest(row[what]) for what in (schema.IMAGE, schema.MASK)}
            for row in cases.to_dict("records")}


def write_reference_cases(config: Mapping[str, Any], directory: str | os.PathLike) -> pd.DataFrame:
    """Write the built-in phantoms under ``directory/phantoms`` and ``directory/cases.csv`` (with user cases).

    Parameters
    ----------
    config : mapping
        A validated experiment config: ``gate.phantoms`` (built-in phantom names) and ``cases.csv`` (user
        cases, optional).
    directory : str or os.PathLike
        The baseline directory.

    Returns
    -------
    DataFrame
        The reference set's cases table (phantoms first).

    Raises
    ------
    ConfigError
        The config has a simulated cohort (not supported here), or the reference set is empty.
    CaseError
        A user case cannot be used.

    Examples
    --------
    >>> import tempfile
    >>> config = {"gate": {"phantoms": ["ibsi", "sphere"]}, "cases": {"cohort": None, "csv": ""}}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_reference_cases(config, folder)[["case_id", "site"]].values.tolist()
    [['ibsi', 'phantom'], ['sphere', 'phantom']]
    """

    if config["cases"]["cohort"]:
        raise ConfigError(f"{config.get('_source', '<config>')}: cases.cohort: the gate's reference set is "
                          "gate.phantoms plus cases.csv; a simulated cohort is not supported here")
    directory = Path(directory)
    phantoms = _builtin_phantoms()
    rows = []
    for name in config["gate"]["phantoms"]:
        image_path, mask_path = write_case(*phantoms[name](), directory / PHANTOM_DIR, name)
        rows.append({schema.CASE_ID: name, schema.SITE: PHANTOM_SITE, schema.IMAGE: str(image_path),
                     schema.MASK: str(mask_path)})
    frames = [pd.DataFrame(rows, columns=schema.CASES.names)]
    if config["cases"]["csv"]:
        user = load_cases(config["cases"]["csv"], label=config["cases"]["label"],
                          tolerance=config["cases"]["geometry_tolerance"])
        frames.append(user[schema.CASES.names])
    cases = pd.concat(frames, ignore_index=True)
    if cases.empty:
        raise ConfigError(f"{config.get('_source', '<config>')}: the reference set is empty: "
                          "list gate.phantoms or give cases.csv")
    cases = schema.CASES.validate(cases, source="gate reference set")
    write_cases(cases, directory / BASELINE_CASES)
    return cases


def extract_reference_set(cases: pd.DataFrame, variants: pd.DataFrame, params: Mapping[str, Any], *,
                          label: int = 1, progress: bool | None = None
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Extract every (case, variant) of the reference set afresh; returns (features, failures) tables.

    It runs through the extraction engine (serially, in a scratch directory, so nothing cached by an
    earlier run is reused); a task that raises becomes a failures row and the others go on.

    Parameters
    ----------
    cases : DataFrame
        The reference set's cases.
    variants : DataFrame
        Its variants table (:func:`design_variants`).
    params : mapping
        The pyradiomics parameters.
    label : int, default 1
        The mask label.
    progress : bool, optional
        A progress bar (``None``: only on a terminal).

    Returns
    -------
    (DataFrame, DataFrame)
        The features table and the failures table.
    """
    chains = variants_from_table(variants, source="gate reference set")
    with tempfile.TemporaryDirectory(prefix="harmony-gate-") as scratch:
        run = run_tasks(cases, chains, params, scratch, executor="serial", label=label, progress=progress,
                        command="gate")
    return run.features, run.failures


def create_baseline(config: Mapping[str, Any], out_dir: str | os.PathLike, *,
                    progress: bool | None = None) -> dict[str, Any]:
    """Extract the reference set of an experiment config and store it in ``out_dir`` as a baseline.

    ``harmony gate baseline``. The baseline holds the cases (built-in phantoms written there, user cases
    by path), the variants, features and failures tables and a manifest with the settings, versions and
    the hash of every input file.

    Parameters
    ----------
    config : mapping
        A validated experiment config (:func:`harmony.load_experiment`, e.g. of ``experiments/gate.toml``).
    out_dir : str or os.PathLike
        The baseline directory.
    progress : bool, optional
        A progress bar (``None``: only on a terminal).

    Returns
    -------
    dict
        The manifest written.

    Raises
    ------
    ConfigError
        Bad extraction settings (before any work), a bad design, or an empty reference set.
    CaseError
        A user case cannot be used.
    """

    started = now_utc()
    params = extraction_params(config)  # bad settings fail here, before any work
    out = Path(out_dir)
    seed = config["experiment"]["seed"]
    variants = design_variants(config, params)
    with RunLock(out):
        cases = write_reference_cases(config, out)
        label = config["cases"]["label"]
        features, failures = extract_reference_set(cases, variants, params, label=label, progress=progress)
        write_table(features, out / BASELINE_FEATURES, schema.FEATURES)
        write_table(failures, out / BASELINE_FAILURES, schema.FAILURES)
        write_table(variants, out / BASELINE_VARIANTS, schema.VARIANTS)
        n_tasks = len(cases) * len(variants)
        manifest = build_manifest(
            command="gate baseline", config={k: v for k, v in config.items() if k != "_source"},
            seeds={"experiment": seed}, started=started,
            tasks={"total": n_tasks, "done": n_tasks - len(failures), "failed": len(failures)},
            settings=params, settings_hash=stable_hash(params, length=64), reference_set=reference_spec(config),
            inputs=_input_hashes(cases), label=label,
        )
        write_manifest(out, manifest)
    return manifest


@dataclass(frozen=True)
class Baseline:
    """A stored baseline, as :func:`load_baseline` reads it.

    Parameters
    ----------
    directory : pathlib.Path
        The baseline directory.
    manifest : dict
        Its manifest (settings, versions, input hashes, label, reference set).
    cases, variants, features, failures : DataFrame
        Its tables.
    """

    directory: Path
    manifest: dict[str, Any]
    cases: pd.DataFrame
    variants: pd.DataFrame
    features: pd.DataFrame
    failures: pd.DataFrame


def _checked_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """A baseline's manifest checked as data: the keys a check reads, with the types it reads them as."""
    if not isinstance(manifest, dict):
        raise GateError(f"{path}: expected a JSON object, got {type(manifest).__name__}; not a gate baseline manifest")
    missing = [k for k in ("settings", "versions", "inputs", "label") if k not in manifest]
    if missing:
        raise GateError(f"{path}: missing key(s) {missing}; not a gate baseline manifest")

    def bad(key: str, expected: str) -> GateError:
        value = manifest[key]
        return GateError(f"{path}: {key} must be {expected}, got {type(value).__name__} {str(value)[:60]!r}")

    label = manifest["label"]
    if not isinstance(label, int) or isinstance(label, bool) or label < 1:
        raise bad("label", "a mask label (an integer >= 1)")
    if not isinstance(manifest["settings"], dict):
        raise bad("settings", "an object of pyradiomics parameters")
    versions_ = manifest["versions"]
    if not isinstance(versions_, dict) or not all(isinstance(v, str) for v in versions_.values()):
        raise bad("versions", "an object of version texts")
    inputs = manifest["inputs"]
    if not isinstance(inputs, dict) or not all(
            isinstance(files, dict) and all(isinstance(files.get(w), str) for w in (schema.IMAGE, schema.MASK))
            for files in inputs.values()):
        raise bad("inputs", "an object of case_id -> {image, mask} digests")
    if not isinstance(manifest.get("reference_set", {}), dict):
        raise bad("reference_set", "an object")
    return manifest


def load_baseline(directory: str | os.PathLike) -> Baseline:
    """Read a baseline directory; a missing file or an input that changed since raises GateError.

    Parameters
    ----------
    directory : str or os.PathLike
        A directory written by :func:`create_baseline`.

    Returns
    -------
    Baseline

    Raises
    ------
    GateError
        Not a baseline (no or incomplete manifest), or a case file differs from the one extracted.
    SchemaError, CaseError
        A table or a case file cannot be read.

    Examples
    --------
    >>> load_baseline("no/such/baseline")
    Traceback (most recent call last):
    ...
    harmony.gate.baseline.GateError: no/such/baseline: not a gate baseline (no manifest.json); create one with ...
    """

    directory = Path(directory)
    if not (directory / MANIFEST_NAME).is_file():
        raise GateError(f"{directory}: not a gate baseline (no {MANIFEST_NAME}); "
                        "create one with `harmony gate baseline`")
    manifest = _checked_manifest(read_json(directory / MANIFEST_NAME), directory / MANIFEST_NAME)
    cases = load_cases(directory / BASELINE_CASES, label=int(manifest["label"]))
    hashes = _input_hashes(cases)
    for case_id, files in hashes.items():
        stored = manifest["inputs"].get(case_id)
        for what, digest in files.items():
            if stored is None or stored.get(what) != digest:
                path = cases.loc[cases[schema.CASE_ID] == case_id, what].iloc[0]
                raise GateError(f"{directory}: case {case_id!r}: {what} {path} differs from the one the baseline "
                                "was extracted from; re-create the baseline")
    return Baseline(directory, manifest, cases, read_table(directory / BASELINE_VARIANTS, schema.VARIANTS),
                    read_table(directory / BASELINE_FEATURES, schema.FEATURES),
                    read_table(directory / BASELINE_FAILURES, schema.FAILURES))


def check_baseline(config: Mapping[str, Any], baseline_dir: str | os.PathLike, *,
                   progress: bool | None = None) -> GateResult:
    """Re-extract a baseline's reference set with the current installation and the config's settings, compare.

    ``harmony gate check``: the reference set is the baseline's (a config whose reference set differs is
    reported as a notice); features are compared within ``gate.tolerance``
    (:func:`~harmony.gate.compare.compare_features`), and setting and version changes are reported.

    Parameters
    ----------
    config : mapping
        A validated experiment config: its extraction settings and ``[gate]`` section.
    baseline_dir : str or os.PathLike
        A directory written by :func:`create_baseline`.
    progress : bool, optional
        A progress bar (``None``: only on a terminal).

    Returns
    -------
    GateResult
        ``result.passed`` is the verdict; :mod:`harmony.gate.reports` formats it.

    Raises
    ------
    GateError
        The baseline cannot be used (see :func:`load_baseline`).
    ConfigError
        The config's extraction settings are rejected.
    """

    baseline = load_baseline(baseline_dir)
    params = extraction_params(config)
    current, failures = extract_reference_set(baseline.cases, baseline.variants, params,
                                              label=int(baseline.manifest["label"]), progress=progress)
    gate = config["gate"]
    notices = []
    if reference_spec(config) != baseline.manifest.get("reference_set"):
        notices.append("the config's reference set (phantoms, cases, perturbations, seed) differs from the "
                       "baseline's; the baseline's stored reference set was used")
    known = set(zip(baseline.failures[schema.CASE_ID], baseline.failures[schema.VARIANT_ID]))
    for row in failures.to_dict("records"):
        if (row[schema.CASE_ID], row[schema.VARIANT_ID]) in known:
            continue
        notices.append(f"extraction failed for case {row[schema.CASE_ID]!r}, variant {row[schema.VARIANT_ID]!r}: "
                       f"{row[schema.ERROR]}")
    return GateResult(
        comparison=compare_features(baseline.features, current, gate["tolerance"], allow_added=gate["allow_added"]),
        versions=version_changes(baseline.manifest["versions"], versions(), gate["versions"]),
        settings=setting_changes(baseline.manifest["settings"], params),
        notices=notices, fail_on_version_change=gate["fail_on_version_change"], baseline=str(baseline_dir),
    )
