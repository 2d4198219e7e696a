"""Comparing two features tables feature by feature, and the settings and versions behind them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.extraction.adapter import feature_class
from harmony.gate.settings import tolerance_for

__all__ = ["FEATURE_CLASS", "STATUS", "PASSED", "N_VALUES", "N_CHANGED", "N_MISSING", "MAX_ABS", "MAX_REL", "CCC",
           "REL_TOL", "ABS_TOL", "MIN_CCC", "COMPARISON_COLUMNS", "OK", "CHANGED", "DISCORDANT", "ADDED", "REMOVED",
           "MISSING", "lins_ccc", "compare_features", "setting_changes", "version_changes", "GateResult"]

# columns of the comparison table (feature is the schema's)
FEATURE_CLASS, STATUS, PASSED = "feature_class", "status", "passed"
N_VALUES, N_CHANGED, N_MISSING = "n_values", "n_changed", "n_missing"
MAX_ABS, MAX_REL, CCC = "max_abs_diff", "max_rel_diff", "ccc"
REL_TOL, ABS_TOL, MIN_CCC = "rel_tol", "abs_tol", "min_ccc"
#: The columns of :func:`compare_features`' table, in order.
COMPARISON_COLUMNS = (schema.FEATURE, FEATURE_CLASS, STATUS, PASSED, N_VALUES, N_CHANGED, N_MISSING, MAX_ABS,
                      MAX_REL, CCC, REL_TOL, ABS_TOL, MIN_CCC)


#: Status of a feature: its values agree, differ beyond tolerance, agree too little (CCC), are present only
#: now or only in the baseline, or are missing for some (case, variant) (a task that failed on one side).
OK, CHANGED, DISCORDANT, ADDED, REMOVED, MISSING = "ok", "changed", "discordant", "added", "removed", "missing"
_KEY = [schema.CASE_ID, schema.VARIANT_ID, schema.REPEAT, schema.FEATURE]


def lins_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two paired samples (population moments).

    Identical constant samples give 1; fewer than two pairs give NaN.

    Parameters
    ----------
    x, y : numpy.ndarray
        The paired values.

    Returns
    -------
    float

    Examples
    --------
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

    Rows are paired on (case_id, variant_id, repeat, feature); diagnostics keys are dropped. A feature
    passes when every paired value is within ``abs + rel * |baseline|`` (its :func:`tolerance_for`), none is
    missing on one side, and, with ``min_ccc``, Lin's CCC across the reference set reaches it.

    Parameters
    ----------
    baseline, current : DataFrame
        Features tables (schema.FEATURES).
    tolerance : mapping
        The ``gate.tolerance`` section (global values, ``class`` and ``feature`` entries).
    allow_added : bool, default False
        A feature present only now passes.

    Returns
    -------
    DataFrame
        :data:`COMPARISON_COLUMNS`, one row per feature of either table (sorted): its ``status`` (``ok``,
        ``changed``, ``discordant``, ``added``, ``removed``, ``missing``), ``passed``, the counts, the largest
        differences, the CCC and the tolerance applied.

    Raises
    ------
    SchemaError
        A table is not a features table.

    Examples
    --------
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0),
    ...         ("c1", "s", "original", 0, "original_shape_VoxelVolume", 8.0)]
    >>> base = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> cur = base.assign(value=[1.0 + 1e-9, 8.5])
    >>> compare_features(base, cur, {"rel": 1e-6, "abs": 1e-9})[["feature", "status", "passed"]]
                          feature   status  passed
    0    original_firstorder_Mean       ok    True
    1  original_shape_VoxelVolume  changed   False
    """
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

    Parameters
    ----------
    old, new : mapping
        pyradiomics parameters (nested tables are compared key by key).

    Returns
    -------
    list of (str, object, object)
        Sorted by key.

    Examples
    --------
    >>> setting_changes({"setting": {"binWidth": 25}}, {"setting": {"binWidth": 24, "label": 1}})
    [('setting.binWidth', 25, 24), ('setting.label', None, 1)]
    """
    a, b = _flatten(old), _flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def version_changes(old: Mapping[str, str], new: Mapping[str, str], keys: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """(name, old, new) for every watched version that differs.

    Parameters
    ----------
    old, new : mapping of str to str
        Versions (:func:`harmony.core.manifest.versions`).
    keys : sequence of str
        The watched names.

    Returns
    -------
    list of (str, str, str)

    Examples
    --------
    >>> version_changes({"numpy": "2.3.0", "scipy": "1"}, {"numpy": "2.4.0", "scipy": "2"}, ["numpy"])
    [('numpy', '2.3.0', '2.4.0')]
    """
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


@dataclass
class GateResult:
    """The outcome of a check: the comparison table and everything reported beside it.

    Parameters
    ----------
    comparison : DataFrame
        What :func:`compare_features` returns.
    versions : list of (str, str, str)
        Watched versions that changed (:func:`version_changes`).
    settings : list of (str, object, object)
        pyradiomics settings that changed (:func:`setting_changes`).
    notices : list of str
        Further lines to report (a differing reference set, new extraction failures).
    fail_on_version_change : bool, default False
        A changed watched version fails the check.
    baseline : str, default ""
        The baseline directory, for the reports.

    Examples
    --------
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0)]
    >>> table = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> result = GateResult(compare_features(table, table, {}), versions=[("numpy", "2.3", "2.4")])
    >>> result.passed, GateResult(result.comparison, result.versions, fail_on_version_change=True).passed
    (True, False)
    """

    comparison: pd.DataFrame
    versions: list[tuple[str, Any, Any]] = field(default_factory=list)
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    fail_on_version_change: bool = False
    baseline: str = ""

    @property
    def failed_features(self) -> pd.DataFrame:
        """The rows of the comparison table that did not pass."""
        return self.comparison[~self.comparison[PASSED]]

    @property
    def version_failed(self) -> bool:
        """Whether a watched version changed and that fails the check."""
        return bool(self.versions) and self.fail_on_version_change

    @property
    def passed(self) -> bool:
        """The verdict: no feature failed and no failing version change."""
        return self.failed_features.empty and not self.version_failed
