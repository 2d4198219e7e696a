"""The extractor-change gate: extract a small reference set, store it as a baseline, re-extract and compare.

A baseline directory holds everything a later check needs to repeat the extraction exactly:

- ``cases.csv`` and ``phantoms/``: the reference set's cases (built-in phantoms written as files; user
  cases referenced by path, relative to the baseline) and ``variants.parquet``, the perturbation chains
  (replayed, never re-sampled);
- ``features.parquet`` and ``failures.parquet``: the baseline's extraction;
- ``manifest.json``: the resolved config, the pyradiomics settings, the reference set's spec, a hash of
  every input file and the versions (``harmony.io.versions()``, which names the pyradiomics distribution).

A check re-extracts the stored reference set with the current installation and the current config's
settings, then compares feature by feature: the largest absolute and relative difference and Lin's
concordance correlation coefficient (CCC) between baseline and current values across the reference set.
A value has changed when ``|current - baseline| > abs + rel * |baseline|`` (``numpy.isclose``'s rule);
the tolerances are set globally, per feature class and per feature, the most specific winning key by
key. The defaults, ``rel = 1e-6`` and ``abs = 1e-9``, let through floating-point noise from a rebuilt
numpy but no change of definition or setting. Diagnostics keys are never compared. A change of a watched
version (pyradiomics distribution or version, numpy, SimpleITK by default) is reported even when every
value agrees; ``fail_on_version_change`` makes it fail the gate.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmony import schema
from harmony.config import Field, Section
from harmony.errors import ConfigError, HarmonyError


class GateError(HarmonyError):
    """A baseline that cannot be used: missing files, changed inputs, an unreadable manifest."""


# -- settings ------------------------------------------------------------------------------------------

#: Versions whose change is reported by default (keys of ``harmony.io.versions()``).
WATCHED_VERSIONS = ("pyradiomics_distribution", "pyradiomics", "numpy", "SimpleITK")
DEFAULT_REL, DEFAULT_ABS = 1e-6, 1e-9

TOLERANCE = Section(
    {
        "rel": Field(float, DEFAULT_REL, min=0.0,
                     doc="Relative tolerance: |current - baseline| <= abs + rel * |baseline|."),
        "abs": Field(float, DEFAULT_ABS, min=0.0, doc="Absolute tolerance (matters for values near zero)."),
        "min_ccc": Field(float, 0.0, min=0.0, max=1.0,
                         doc="Fail when Lin's CCC across the reference set is below this; 0 turns the check off."),
    }
)


#: Small procedural phantoms (harmony.phantoms specs, rendered with a fixed seed) whose intensities span
#: several bins at common bin widths, so that a discretisation change reaches the texture features.
PROCEDURAL_PHANTOMS: dict[str, tuple[dict[str, Any], int]] = {
    "sphere": ({"grid": {"size": [20, 20, 20]},
                "lesion": {"radius_mm": 6.0, "intensity": 100.0, "heterogeneity": 30.0, "coarseness_mm": 1.5}}, 1),
    "lobulated": ({"grid": {"size": [22, 22, 22]},
                   "lesion": {"radius_mm": 7.0, "lobes": 4, "lobulation": 0.3, "intensity": 120.0,
                              "heterogeneity": 25.0, "regions": 3, "region_contrast": 30.0}}, 2),
    "necrotic": ({"grid": {"size": [22, 22, 22]},
                  "lesion": {"radius_mm": 7.0, "axes": [1.0, 0.8, 0.7], "necrosis_fraction": 0.3,
                             "intensity": 150.0, "heterogeneity": 20.0}}, 3),
}


def _builtin_phantoms() -> dict[str, Callable[[], tuple[Any, Any]]]:
    """Name -> function returning (image, mask) of every built-in reference phantom."""
    from functools import partial

    from harmony import phantoms

    found: dict[str, Callable[[], tuple[Any, Any]]] = {"ibsi": phantoms.ibsi_digital_phantom}
    for name, (spec, seed) in PROCEDURAL_PHANTOMS.items():
        found[name] = partial(phantoms.render_phantom, spec, seed)
    return found


def _check_phantoms(names: list) -> str | None:
    known = _builtin_phantoms()
    unknown = [n for n in names if n not in known]
    if unknown:
        return f"unknown phantom {unknown[0]!r} (known: {', '.join(sorted(known))})"
    if len(set(names)) != len(names):
        return "phantom names must be unique"
    return None


def _check_entry(what: str, name: str, entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return f"{what} {name!r}: expected a table such as {{ rel = 1e-4 }}, got {entry!r}"
    for key, value in entry.items():
        spec = TOLERANCE.fields.get(key)
        if spec is None:
            return f"{what} {name!r}: unknown key {key!r} (known: {', '.join(TOLERANCE.fields)})"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{what} {name!r}: {key} must be a finite number, got {value!r}"
        if value < spec.min or (spec.max is not None and value > spec.max):
            bounds = f">= {spec.min}" if spec.max is None else f"between {spec.min} and {spec.max}"
            return f"{what} {name!r}: {key} must be {bounds}, got {value!r}"
    return None


def _check_class_tolerances(table: dict) -> str | None:
    from radiomics import getFeatureClasses

    known = getFeatureClasses()
    for name, entry in table.items():
        if name not in known:
            return f"unknown feature class {name!r} (known: {', '.join(sorted(known))})"
        message = _check_entry("class", name, entry)
        if message:
            return message
    return None


def _check_feature_tolerances(table: dict) -> str | None:
    for name, entry in table.items():
        if len(name.split("_")) < 3:
            return f"{name!r} is not a pyradiomics feature key such as 'original_glcm_Contrast'"
        message = _check_entry("feature", name, entry)
        if message:
            return message
    return None


SETTINGS = Section(
    {
        "phantoms": Field(list, ["ibsi", *PROCEDURAL_PHANTOMS], item=Field(str), check=_check_phantoms,
                          doc="Built-in phantoms in the reference set (with cases.csv, if given)."),
        "fail_on_version_change": Field(bool, False,
                                        doc="Fail when a watched version differs from the baseline's."),
        "versions": Field(list, list(WATCHED_VERSIONS), item=Field(str),
                          doc="Keys of `harmony versions` whose change is reported."),
        "allow_added": Field(bool, False, doc="Pass when the current extraction has features the baseline lacks."),
        "tolerance": Section(
            {
                **TOLERANCE.fields,
                "class": Field(dict, {}, check=_check_class_tolerances,
                               doc="Per feature class, e.g. [gate.tolerance.class.glcm] rel = 1e-4."),
                "feature": Field(dict, {}, check=_check_feature_tolerances,
                                 doc='Per feature key, e.g. [gate.tolerance.feature."original_glcm_Idmn"].'),
            }
        ),
    },
    doc="The extractor-change gate: reference set and tolerances.",
)


@dataclass(frozen=True)
class Tolerance:
    rel: float = DEFAULT_REL
    abs: float = DEFAULT_ABS
    min_ccc: float = 0.0


def tolerance_for(feature: str, tolerance: Mapping[str, Any]) -> Tolerance:
    """The tolerance of one feature: global, then its class's entry, then its own entry; key by key.

    >>> settings = {"rel": 1e-6, "abs": 1e-9, "min_ccc": 0.0, "class": {"glcm": {"rel": 1e-3, "abs": 1e-5}},
    ...             "feature": {"original_glcm_Idmn": {"rel": 0.1}}}
    >>> tolerance_for("original_glcm_Idmn", settings)
    Tolerance(rel=0.1, abs=1e-05, min_ccc=0.0)
    >>> tolerance_for("original_shape_Sphericity", settings)
    Tolerance(rel=1e-06, abs=1e-09, min_ccc=0.0)
    """
    from harmony.extract import feature_class

    values = {key: tolerance.get(key, getattr(Tolerance, key)) for key in TOLERANCE.fields}
    for entry in (tolerance.get("class", {}).get(feature_class(feature), {}),
                  tolerance.get("feature", {}).get(feature, {})):
        values.update(entry)
    return Tolerance(**{k: float(v) for k, v in values.items()})


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
    from harmony.perturb import expand_design, variants_table

    variants = expand_design(config["perturbations"] or {}, seed=config["experiment"]["seed"],
                             base_params=params, source=f"{config.get('_source', '<config>')}: perturbations")
    return variants_table(variants)


def _input_hashes(cases: pd.DataFrame) -> dict[str, dict[str, str]]:
    from harmony.engine import file_digest

    return {row[schema.CASE_ID]: {what: file_digest(row[what]) for what in (schema.IMAGE, schema.MASK)}
            for row in cases.to_dict("records")}


def write_reference_cases(config: Mapping[str, Any], directory: str | os.PathLike) -> pd.DataFrame:
    """Write the built-in phantoms under ``directory/phantoms`` and ``directory/cases.csv`` (with user cases)."""
    from harmony.cases import load_cases, write_cases
    from harmony.phantoms import write_case

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

    from harmony.engine import run_tasks
    from harmony.perturb import variants_from_table

    chains = variants_from_table(variants, source="gate reference set")
    with tempfile.TemporaryDirectory(prefix="harmony-gate-") as scratch:
        run = run_tasks(cases, chains, params, scratch, executor="serial", label=label, progress=progress,
                        command="gate")
    return run.features, run.failures


def create_baseline(config: Mapping[str, Any], out_dir: str | os.PathLike, *,
                    progress: bool | None = None) -> dict[str, Any]:
    """Extract the reference set of an experiment config (see :func:`harmony.config.load_experiment`) and
    store it in ``out_dir`` as a baseline; returns the manifest written."""
    from harmony.io import build_manifest, now_utc, stable_hash, write_manifest, write_table
    from harmony.pipeline import extraction_params

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
    from harmony.cases import load_cases
    from harmony.io import MANIFEST_NAME, read_json, read_table

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


# -- comparison ----------------------------------------------------------------------------------------

# columns of the comparison table (feature is the schema's)
FEATURE_CLASS, STATUS, PASSED = "feature_class", "status", "passed"
N_VALUES, N_CHANGED, N_MISSING = "n_values", "n_changed", "n_missing"
MAX_ABS, MAX_REL, CCC = "max_abs_diff", "max_rel_diff", "ccc"
REL_TOL, ABS_TOL, MIN_CCC = "rel_tol", "abs_tol", "min_ccc"
COMPARISON_COLUMNS = (schema.FEATURE, FEATURE_CLASS, STATUS, PASSED, N_VALUES, N_CHANGED, N_MISSING, MAX_ABS,
                      MAX_REL, CCC, REL_TOL, ABS_TOL, MIN_CCC)
#: Status of a feature: its values agree, differ beyond tolerance, agree too little (CCC), are present only
#: now or only in the baseline, or are missing for some (case, variant) (a task that failed on one side).
OK, CHANGED, DISCORDANT, ADDED, REMOVED, MISSING = "ok", "changed", "discordant", "added", "removed", "missing"
_KEY = [schema.CASE_ID, schema.VARIANT_ID, schema.REPEAT, schema.FEATURE]


def lins_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two paired samples (population moments).

    Identical constant samples give 1; fewer than two pairs give NaN.

    >>> round(lins_ccc(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5])), 4)
    0.9524
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return math.nan
    mx, my = x.mean(), y.mean()
    denominator = x.var() + y.var() + (mx - my) ** 2
    if denominator == 0:
        return 1.0
    return float(2 * np.mean((x - mx) * (y - my)) / denominator)


def _differences(base: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute and relative differences; NaN on both sides is equal, NaN on one side is infinitely far."""
    both_nan = np.isnan(base) & np.isnan(cur)
    one_nan = np.isnan(base) ^ np.isnan(cur)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(cur - base)
        rel = np.where(diff == 0, 0.0, diff / np.abs(base))
    diff = np.where(both_nan, 0.0, np.where(one_nan, np.inf, diff))
    rel = np.where(both_nan, 0.0, np.where(one_nan, np.inf, rel))
    return diff, rel


def compare_features(baseline: pd.DataFrame, current: pd.DataFrame, tolerance: Mapping[str, Any], *,
                     allow_added: bool = False) -> pd.DataFrame:
    """Compare two features tables (schema.FEATURES) feature by feature; one row per feature of either.

    Rows are paired on (case_id, variant_id, repeat, feature); diagnostics keys are dropped. ``tolerance``
    is the ``gate.tolerance`` section (global values, ``class`` and ``feature`` entries).
    """
    from harmony.extract import feature_class

    tables = []
    for df, name in ((baseline, "baseline"), (current, "current")):
        df = schema.FEATURES.validate(df, source=name)
        tables.append(df.loc[~df[schema.FEATURE].str.startswith(schema.DIAGNOSTICS_PREFIX), _KEY + [schema.VALUE]])
    merged = tables[0].merge(tables[1], on=_KEY, how="outer", suffixes=("_base", "_cur"), indicator=True)
    rows = []
    for feature, group in merged.groupby(schema.FEATURE, sort=True):
        tol = tolerance_for(feature, tolerance)
        sides = group["_merge"]
        paired = group[sides == "both"]
        base, cur = paired[f"{schema.VALUE}_base"].to_numpy(float), paired[f"{schema.VALUE}_cur"].to_numpy(float)
        diff, rel = _differences(base, cur)
        with np.errstate(invalid="ignore"):
            changed = ~(diff <= tol.abs + tol.rel * np.abs(np.nan_to_num(base)))
        finite = np.isfinite(base) & np.isfinite(cur)
        ccc = lins_ccc(base[finite], cur[finite])
        n_missing = int((sides != "both").sum())
        if (sides == "right_only").all():
            status = ADDED
        elif (sides == "left_only").all():
            status = REMOVED
        elif n_missing:
            status = MISSING
        elif changed.any():
            status = CHANGED
        elif tol.min_ccc > 0 and not ccc >= tol.min_ccc:
            status = DISCORDANT
        else:
            status = OK
        rows.append({
            schema.FEATURE: feature, FEATURE_CLASS: feature_class(feature), STATUS: status,
            PASSED: status == OK or (status == ADDED and allow_added), N_VALUES: len(group),
            N_CHANGED: int(changed.sum()), N_MISSING: n_missing,
            MAX_ABS: float(diff.max()) if len(diff) else math.nan, MAX_REL: float(rel.max()) if len(rel) else math.nan,
            CCC: ccc, REL_TOL: tol.rel, ABS_TOL: tol.abs, MIN_CCC: tol.min_ccc,
        })
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


def setting_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every pyradiomics setting that differs; absent values are None.

    >>> setting_changes({"setting": {"binWidth": 25}}, {"setting": {"binWidth": 24, "label": 1}})
    [('setting.binWidth', 25, 24), ('setting.label', None, 1)]
    """
    a, b = _flatten(old), _flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def version_changes(old: Mapping[str, str], new: Mapping[str, str], keys: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """(name, old, new) for every watched version that differs.

    >>> version_changes({"numpy": "2.3.0", "scipy": "1"}, {"numpy": "2.4.0", "scipy": "2"}, ["numpy"])
    [('numpy', '2.3.0', '2.4.0')]
    """
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


@dataclass
class GateResult:
    """The outcome of a check: the comparison table and everything reported beside it."""

    comparison: pd.DataFrame
    versions: list[tuple[str, Any, Any]] = field(default_factory=list)
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    fail_on_version_change: bool = False
    baseline: str = ""

    @property
    def failed_features(self) -> pd.DataFrame:
        return self.comparison[~self.comparison[PASSED]]

    @property
    def version_failed(self) -> bool:
        return bool(self.versions) and self.fail_on_version_change

    @property
    def passed(self) -> bool:
        return self.failed_features.empty and not self.version_failed


def check_baseline(config: Mapping[str, Any], baseline_dir: str | os.PathLike, *,
                   progress: bool | None = None) -> GateResult:
    """Re-extract a baseline's reference set with the current installation and the config's settings, compare."""
    from harmony.io import versions
    from harmony.pipeline import extraction_params

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


# -- reports -------------------------------------------------------------------------------------------

def _num(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _failure_message(row: Mapping[str, Any]) -> str:
    status = row[STATUS]
    if status in (ADDED, REMOVED):
        return f"feature {status}"
    if status == MISSING:
        return f"{row[N_MISSING]} of {row[N_VALUES]} values present on one side only"
    if status == DISCORDANT:
        return f"CCC {_num(row[CCC])} < {row[MIN_CCC]:g}"
    return (f"{row[N_CHANGED]} of {row[N_VALUES]} values changed: max abs diff {_num(row[MAX_ABS])}, "
            f"max rel diff {_num(row[MAX_REL])} (tolerance rel {row[REL_TOL]:g}, abs {row[ABS_TOL]:g}), "
            f"CCC {_num(row[CCC])}")


def _notice_lines(result: GateResult) -> list[str]:
    lines = [f"version {name}: {old} -> {new}" + (" (fails the gate)" if result.fail_on_version_change else "")
             for name, old, new in result.versions]
    lines += [f"setting {key}: {old!r} -> {new!r}" for key, old, new in result.settings]
    return lines + result.notices


def summary(result: GateResult) -> str:
    """One line: passed or failed, and how many features changed of how many compared."""
    n, bad = len(result.comparison), len(result.failed_features)
    verdict = "PASSED" if result.passed else "FAILED"
    extra = "; watched versions changed" if result.version_failed else ""
    return f"harmony gate {verdict}: {bad} of {n} features differ from the baseline{extra}"


def format_table(result: GateResult) -> str:
    """A plain-text table of every failing feature, then the notices (for a terminal's stderr)."""
    failed = result.failed_features
    header = ("feature", "status", "changed", "max abs diff", "max rel diff", "CCC")
    rows = [(r[schema.FEATURE], r[STATUS], f"{r[N_CHANGED]}/{r[N_VALUES]}", _num(r[MAX_ABS]), _num(r[MAX_REL]),
             _num(r[CCC])) for r in failed.to_dict("records")]
    lines = [summary(result)]
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for row in (header, *rows):
            lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    lines += [f"notice: {line}" for line in _notice_lines(result)]
    return "\n".join(lines)


def markdown_report(result: GateResult) -> str:
    """The check as Markdown: verdict, notices, every failing feature with its numbers, counts by status."""
    lines = [f"# {summary(result)}", "", f"Baseline: `{result.baseline}`", ""]
    notices = _notice_lines(result)
    if notices:
        lines += ["## Notices", ""] + [f"- {line}" for line in notices] + [""]
    failed = result.failed_features
    if len(failed):
        lines += ["## Features that differ", "",
                  "| feature | status | values changed | max abs diff | max rel diff | CCC | tolerance (rel, abs) |",
                  "|---|---|---|---|---|---|---|"]
        for r in failed.to_dict("records"):
            lines.append(f"| `{r[schema.FEATURE]}` | {r[STATUS]} | {r[N_CHANGED]}/{r[N_VALUES]} | {_num(r[MAX_ABS])} | "
                         f"{_num(r[MAX_REL])} | {_num(r[CCC])} | {r[REL_TOL]:g}, {r[ABS_TOL]:g} |")
        lines.append("")
    counts = result.comparison[STATUS].value_counts()
    lines += ["## Features by status", ""] + [f"- {status}: {n}" for status, n in counts.items()]
    return "\n".join(lines) + "\n"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testcase per feature (failures carry the numbers), plus one for the watched versions."""
    comparison = result.comparison
    n_failures = len(result.failed_features) + int(result.version_failed)
    suite = ET.Element("testsuite", name="harmony gate", tests=str(len(comparison) + 1),
                       failures=str(n_failures), errors="0", skipped="0")
    for r in comparison.to_dict("records"):
        case = ET.SubElement(suite, "testcase", classname=f"harmony.gate.{r[FEATURE_CLASS]}", name=r[schema.FEATURE])
        if not r[PASSED]:
            message = _failure_message(r)
            ET.SubElement(case, "failure", message=message, type=r[STATUS]).text = message
    case = ET.SubElement(suite, "testcase", classname="harmony.gate", name="versions")
    changes = "\n".join(f"{name}: {old} -> {new}" for name, old, new in result.versions)
    if result.version_failed:
        ET.SubElement(case, "failure", message="watched versions changed", type="version").text = changes
    elif changes:
        ET.SubElement(case, "system-out").text = changes
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_check_report(result: GateResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``gate.md``, ``junit.xml`` and ``comparison.csv`` into ``out_dir``."""
    from harmony.io import atomic_write, write_text

    out = Path(out_dir)
    return {
        "markdown": write_text(out / "gate.md", markdown_report(result)),
        "junit": write_text(out / "junit.xml", junit_xml(result)),
        "comparison": atomic_write(out / "comparison.csv", lambda tmp: result.comparison.to_csv(tmp, index=False)),
    }
