"""Gate baselines: extract the reference set once, store it, and check a new extraction against it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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
from harmony.gate.settings import _builtin_phantoms
from harmony.perturb.design import expand_design
from harmony.perturb.variants import variants_from_table, variants_table
from harmony.phantoms.digital import write_case


class GateError(HarmonyError):
    """A baseline that cannot be used: missing files, changed inputs, an unreadable manifest."""


# -- the reference set ---------------------------------------------------------------------------------

BASELINE_FEATURES, BASELINE_FAILURES = "features.parquet", "failures.parquet"


BASELINE_VARIANTS, BASELINE_CASES, PHANTOM_DIR = "variants.parquet", "cases.csv", "phantoms"


PHANTOM_SITE = "phantom"


def reference_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """What defines the reference set (not how it is extracted): phantoms, user cases, design and seed."""
    return {
        "phantoms": list(config["gate"]["phantoms"]),
        "cases_csv": config["cases"]["csv"],
        "perturbations": config["perturbations"],
        "seed": config["experiment"]["seed"],
        "label": config["cases"]["label"],
    }


def design_variants(config: Mapping[str, Any], params: Mapping[str, Any]) -> pd.DataFrame:
    """The variants table (schema.VARIANTS) of the config's perturbation design; the original is always in it."""

    variants = expand_design(config["perturbations"] or {}, seed=config["experiment"]["seed"],
                             base_params=params, source=f"{config.get('_source', '<config>')}: perturbations")
    return variants_table(variants)


def _input_hashes(cases: pd.DataFrame) -> dict[str, dict[str, str]]:
    return {row[schema.CASE_ID]: {what: file_digest(row[what]) for what in (schema.IMAGE, schema.MASK)}
            for row in cases.to_dict("records")}


def write_reference_cases(config: Mapping[str, Any], directory: str | os.PathLike) -> pd.DataFrame:
    """Write the built-in phantoms under ``directory/phantoms`` and ``directory/cases.csv`` (with user cases)."""

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
    """
    import tempfile


    chains = variants_from_table(variants, source="gate reference set")
    with tempfile.TemporaryDirectory(prefix="harmony-gate-") as scratch:
        run = run_tasks(cases, chains, params, scratch, executor="serial", label=label, progress=progress,
                        command="gate")
    return run.features, run.failures


def create_baseline(config: Mapping[str, Any], out_dir: str | os.PathLike, *,
                    progress: bool | None = None) -> dict[str, Any]:
    """Extract the reference set of an experiment config (see :func:`harmony.config.load_experiment`) and
    store it in ``out_dir`` as a baseline; returns the manifest written."""

    started = now_utc()
    params = extraction_params(config)  # bad settings fail here, before any work
    out = Path(out_dir)
    seed = config["experiment"]["seed"]
    variants = design_variants(config, params)
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
    directory: Path
    manifest: dict[str, Any]
    cases: pd.DataFrame
    variants: pd.DataFrame
    features: pd.DataFrame
    failures: pd.DataFrame


def load_baseline(directory: str | os.PathLike) -> Baseline:
    """Read a baseline directory; a missing file or an input that changed since raises GateError."""

    directory = Path(directory)
    if not (directory / MANIFEST_NAME).is_file():
        raise GateError(f"{directory}: not a gate baseline (no {MANIFEST_NAME}); "
                        "create one with `harmony gate baseline`")
    manifest = read_json(directory / MANIFEST_NAME)
    missing = [k for k in ("settings", "versions", "inputs", "label") if k not in manifest]
    if missing:
        raise GateError(f"{directory / MANIFEST_NAME}: missing key(s) {missing}; not a gate baseline manifest")
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
    """Re-extract a baseline's reference set with the current installation and the config's settings, compare."""

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
