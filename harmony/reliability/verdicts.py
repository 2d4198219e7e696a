"""Categories and verdicts: each metric classified by the configured rule, and the stable features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.core.errors import SchemaError
from harmony.core.schema import (
    CATEGORY,
    CI_HIGH,
    CI_LOW,
    ESTIMATE,
    FEATURE,
    ICC_METRICS,
    METRIC,
    N_CASES,
    PERTURBATION,
    REASON,
    STABLE,
)
from harmony.reliability.settings import (
    ALL,
    CCC,
    CCC_CATEGORIES,
    COV,
    COV_CATEGORIES,
    ICC_CATEGORIES,
    RANGE,
    RANGE_CATEGORY,
    UNDEFINED,
    resolve_settings,
)

__all__ = ["feature_verdicts", "summary_counts", "judged_values", "judged_words", "category_bands", "rule_sentence",
           "stable_by_perturbation"]

# -- categories and reasons ---------------------------------------------------------------------------

_BOUND_WORD = {CI_LOW: "lower bound", CI_HIGH: "upper bound", ESTIMATE: "estimate"}


def _rule(metric: str, settings: Mapping[str, Any]) -> tuple[str, tuple, tuple[str, ...], float, bool]:
    """(bound judged, category thresholds, category names, stability threshold, higher is better)."""
    conservative = settings["judge_on"] == "ci_low"
    if metric in ICC_METRICS:
        return (CI_LOW if conservative else ESTIMATE, tuple(settings["icc_thresholds"]), ICC_CATEGORIES,
                settings["icc_min"], True)
    if metric == CCC:
        return (CI_LOW if conservative else ESTIMATE, tuple(settings["ccc_thresholds"]), CCC_CATEGORIES,
                settings["ccc_min"], True)
    return CI_HIGH if conservative else ESTIMATE, (settings["cov_max"],), COV_CATEGORIES, settings["cov_max"], False


def _classify(metric: str, perturbation: str, values: np.ndarray, undefined: np.ndarray,
              settings: Mapping[str, Any]) -> tuple[list, np.ndarray, list]:
    """Category, stable flag and reason of each feature's row for one metric and perturbation."""
    n = values.shape[1]
    if metric == RANGE:
        cats = [UNDEFINED if u else RANGE_CATEGORY for u in undefined]
        reasons = [f"range undefined under {perturbation}: {u}" if u else
                   "range: descriptive (feature units), never flagged" for u in undefined]
        return cats, np.array([not u for u in undefined], dtype=bool), reasons
    bound, edges, names, threshold, higher = _rule(metric, settings)
    column = {ESTIMATE: 0, CI_LOW: 1, CI_HIGH: 2}[bound]
    judged = values[column].copy()
    fallback = np.isnan(judged) & ~np.isnan(values[0])  # interval undefined: judge the estimate
    judged[fallback] = values[0][fallback]
    index = np.digitize(judged, edges, right=not higher)
    stable = judged >= threshold if higher else judged <= threshold
    cats, reasons = [], []
    for i in range(n):
        if undefined[i] or np.isnan(judged[i]):
            cats.append(UNDEFINED)
            reasons.append(f"{metric} undefined under {perturbation}: {undefined[i] or 'not computable'}")
            stable[i] = False
            continue
        cats.append(names[index[i]])
        word = "estimate (interval undefined)" if fallback[i] else _BOUND_WORD[bound]
        sign = (">=" if stable[i] else "<") if higher else ("<=" if stable[i] else ">")
        reasons.append(f"{metric} {word} {judged[i]:.2f} {sign} {threshold:.2f} under {perturbation}")
    return cats, stable, reasons


def judged_values(reliability: pd.DataFrame, settings: Mapping[str, Any] | None = None,
                  **overrides: Any) -> pd.Series:
    """The value the rule judged on each row: its bound (``judge_on``) or, where that is undefined, its estimate.

    Categories, stable flags, the report's figure bands and its text all read this one quantity.

    Parameters
    ----------
    reliability : DataFrame
        A reliability table: ``metric``, ``estimate``, ``ci_low``, ``ci_high`` at least.
    settings : mapping, optional
        A ``[reliability]`` section; keyword ``overrides`` are merged over it.

    Returns
    -------
    Series
        One float per row (index of ``reliability``); NaN for a range row (never judged). A table without
        the bound's column (estimates only) is judged on its estimates.

    Examples
    --------
    >>> rows = pd.DataFrame({"metric": ["ICC(A,1)", "ICC(A,1)", "CoV"], "estimate": [0.9, 0.8, 0.05],
    ...                      "ci_low": [0.7, float("nan"), 0.02], "ci_high": [0.97, 0.9, 0.09]})
    >>> judged_values(rows).tolist()
    [0.7, 0.8, 0.09]
    >>> judged_values(rows, judge_on="estimate").tolist()
    [0.9, 0.8, 0.05]
    """
    settings = resolve_settings(settings, **overrides)
    out = pd.Series(np.nan, index=reliability.index, dtype=float)
    for metric in reliability[METRIC].unique():
        if metric == RANGE:
            continue
        bound = _rule(metric, settings)[0]
        bound = bound if bound in reliability.columns else ESTIMATE  # a table of estimates only
        sel = reliability[METRIC] == metric
        out[sel] = reliability.loc[sel, bound].where(reliability.loc[sel, bound].notna(),
                                                     reliability.loc[sel, ESTIMATE]).astype(float)
    return out


def judged_words(metric: str, settings: Mapping[str, Any] | None = None) -> str:
    """What :func:`judged_values` holds for ``metric``, in words (``"lower bound of the 95% interval"``).

    Parameters
    ----------
    metric : str
        A reliability metric label.
    settings : mapping, optional
        A ``[reliability]`` section.

    Returns
    -------
    str

    Examples
    --------
    >>> judged_words("ICC(A,1)"), judged_words("CoV", {"judge_on": "estimate"})
    ('lower bound of the 95% confidence interval', 'point estimate')
    """
    settings = resolve_settings(settings)
    bound = _rule(metric, settings)[0]
    if bound == ESTIMATE:
        return "point estimate"
    side = "lower" if bound == CI_LOW else "upper"
    return f"{side} bound of the {settings['confidence']:.0%} confidence interval"


def category_bands(metric: str, settings: Mapping[str, Any] | None = None) -> list[tuple[float, float, str]]:
    """The categories of ``metric`` as (low, high, name) intervals of the judged value, lowest first.

    Parameters
    ----------
    metric : str
        An ICC form, ``CCC`` or ``CoV``.
    settings : mapping, optional
        A ``[reliability]`` section (its thresholds).

    Returns
    -------
    list of (float, float, str)
        The first band starts at ``-inf`` and the last ends at 1 (``inf`` for the CoV).

    Examples
    --------
    >>> category_bands("ICC(A,1)")
    [(-inf, 0.5, 'poor'), (0.5, 0.75, 'moderate'), (0.75, 0.9, 'good'), (0.9, 1.0, 'excellent')]
    """
    settings = resolve_settings(settings)
    _, edges, names, _, higher = _rule(metric, settings)
    bounds = [-np.inf if higher else 0.0, *edges, 1.0 if higher else np.inf]
    return [(float(a), float(b), name) for a, b, name in zip(bounds[:-1], bounds[1:], names)]


def rule_sentence(settings: Mapping[str, Any] | None = None) -> str:
    """The stable rule of ``settings`` in one sentence, as the report states it.

    Parameters
    ----------
    settings : mapping, optional
        A ``[reliability]`` section.

    Returns
    -------
    str

    Examples
    --------
    >>> rule_sentence()  # doctest: +NORMALIZE_WHITESPACE
    'A feature is stable when, under every perturbation kind and under all of them together, the lower bound
    of the 95% confidence interval of its ICC(A,1) is >= 0.75; its category (Koo & Li 2016) is read from the
    same lower bound of the 95% confidence interval.'
    """
    settings = resolve_settings(settings)
    parts = []
    for metric in _verdict_metric_names(settings):
        threshold, higher = _rule(metric, settings)[3:]
        parts.append(f"the {judged_words(metric, settings)} of its {metric} is {'>=' if higher else '<='} "
                     f"{threshold:g}")
    first = _verdict_metric_names(settings)[0]
    source = {CCC: "McBride 2005", COV: f"low when <= {settings['cov_max']:g}"}.get(first, "Koo & Li 2016")
    return (f"A feature is stable when, under every perturbation kind and under all of them together, "
            f"{' and '.join(parts)}; its category ({source}) is read from the same "
            f"{judged_words(first, settings)}.")


# -- verdicts and summaries ---------------------------------------------------------------------------

def _verdict_metric_names(settings: Mapping[str, Any]) -> list[str]:
    return [{"icc": settings["icc"], "ccc": CCC, "cov": COV}[m] for m in settings["verdict"]]


def feature_verdicts(reliability: pd.DataFrame, settings: Mapping[str, Any] | None = None,
                     **overrides: Any) -> pd.DataFrame:
    """One verdict per feature: stable when every verdict metric passes under every perturbation.

    Parameters
    ----------
    reliability : DataFrame
        A reliability table (:func:`harmony.reliability_table`).
    settings : mapping, optional
        A ``[reliability]`` section: ``verdict`` names the metrics every perturbation must pass (default
        the ``icc`` form only); keyword ``overrides`` are merged over it.

    Returns
    -------
    DataFrame
        ``feature, stable, reason, worst_perturbation, metric, estimate, ci_low, ci_high, category,
        n_cases``; the last six describe the weakest row (an undefined row first, then the one furthest
        below, or nearest above, its threshold; among perturbation kinds before ``all``).

    Raises
    ------
    SchemaError
        ``reliability`` is not a reliability table with a ``reason`` column.
    ConfigError
        ``settings`` do not validate.

    Examples
    --------
    >>> rows = pd.DataFrame({"feature": ["f", "f"], "perturbation": ["noise", "all"],
    ...                      "metric": "ICC(A,1)", "estimate": [0.8, 0.85], "ci_low": [0.62, 0.7],
    ...                      "ci_high": [0.9, 0.95], "n_cases": 20, "n_variants": 3,
    ...                      "category": ["moderate", "moderate"], "stable": False,
    ...                      "reason": ["ICC(A,1) lower bound 0.62 < 0.75 under noise",
    ...                                 "ICC(A,1) lower bound 0.70 < 0.75 under all"]})
    >>> verdict = feature_verdicts(rows)
    >>> verdict.loc[0, "reason"]
    'ICC(A,1) lower bound 0.62 < 0.75 under noise; 1 more check(s) fail'
    """
    settings = resolve_settings(settings, **overrides)
    rows = schema.RELIABILITY.validate(reliability, "reliability")
    if REASON not in rows.columns:
        raise SchemaError(f"reliability table has no {REASON!r} column; make it with reliability_table()")
    rows = rows[rows[METRIC].isin(_verdict_metric_names(settings))].copy()
    margin = np.full(len(rows), -np.inf)
    for metric in rows[METRIC].unique():
        bound, _, _, threshold, higher = _rule(metric, settings)
        sel = (rows[METRIC] == metric).to_numpy()
        judged = rows.loc[sel, bound].where(rows.loc[sel, bound].notna(), rows.loc[sel, ESTIMATE]).to_numpy()
        margin[sel] = judged - threshold if higher else threshold - judged
    margin[(rows[CATEGORY] == UNDEFINED).to_numpy() | np.isnan(margin)] = -np.inf
    rows["_margin"] = margin
    rows["_is_all"] = rows[PERTURBATION] == ALL
    # Failing rows first; a perturbation kind before "all"; then the furthest below (nearest above) threshold.
    rows = rows.sort_values([FEATURE, STABLE, "_is_all", "_margin"], kind="stable")
    out = []
    for feature, group in rows.groupby(FEATURE, sort=True):
        worst = group.iloc[0]
        failing = int((~group[STABLE]).sum())
        stable = failing == 0
        if stable:
            reason = f"all {len(group)} check(s) pass; weakest: {worst[REASON]}"
        else:
            reason = worst[REASON] + (f"; {failing - 1} more check(s) fail" if failing > 1 else "")
        out.append({FEATURE: feature, STABLE: stable, REASON: reason, "worst_perturbation": worst[PERTURBATION],
                    METRIC: worst[METRIC], ESTIMATE: worst[ESTIMATE], CI_LOW: worst[CI_LOW],
                    CI_HIGH: worst[CI_HIGH], CATEGORY: worst[CATEGORY], N_CASES: worst[N_CASES]})
    return pd.DataFrame(out)


def summary_counts(reliability: pd.DataFrame, settings: Mapping[str, Any] | None = None,
                   **overrides: Any) -> pd.DataFrame:
    """Features per category of the verdict ICC form, per perturbation, plus how many rows are stable.

    Parameters
    ----------
    reliability : DataFrame
        A reliability table: ``perturbation``, ``metric``, ``category`` and ``stable`` at least.
    settings : mapping, optional
        A ``[reliability]`` section (its ``icc`` form is counted); keyword ``overrides`` are merged over it.

    Returns
    -------
    DataFrame
        Indexed by perturbation (in table order): one column per ICC category and ``undefined``, and
        ``stable``.

    Raises
    ------
    ConfigError
        ``settings`` do not validate.

    Examples
    --------
    >>> rows = pd.DataFrame({"perturbation": ["noise", "noise", "all"], "metric": "ICC(A,1)",
    ...                      "category": ["good", "poor", "good"], "stable": [True, False, True]})
    >>> summary_counts(rows).reset_index()
      perturbation  poor  moderate  good  excellent  undefined  stable
    0        noise     1         0     1          0          0       1
    1          all     0         0     1          0          0       1
    """
    settings = resolve_settings(settings, **overrides)
    rows = reliability[reliability[METRIC] == settings["icc"]]
    order = list(dict.fromkeys(rows[PERTURBATION]))
    counts = pd.crosstab(rows[PERTURBATION], rows[CATEGORY]).reindex(
        index=order, columns=list(ICC_CATEGORIES) + [UNDEFINED], fill_value=0)
    counts[STABLE] = rows.groupby(PERTURBATION, sort=False)[STABLE].sum().reindex(order).astype(int)
    counts.columns.name = None
    return counts


def stable_by_perturbation(reliability: pd.DataFrame, settings: Mapping[str, Any] | None = None,
                           **overrides: Any) -> pd.DataFrame:
    """Per feature and perturbation group, whether every verdict metric passes there (one column per group).

    :func:`feature_verdicts` calls a feature stable when every column here is true.

    Parameters
    ----------
    reliability : DataFrame
        A reliability table.
    settings : mapping, optional
        A ``[reliability]`` section (its ``verdict``); keyword ``overrides`` are merged over it.

    Returns
    -------
    DataFrame
        ``feature`` and one bool column per perturbation (table order: the kinds, then ``all``).

    Examples
    --------
    >>> rows = pd.DataFrame({"feature": ["f", "f", "g", "g"], "perturbation": ["noise", "all"] * 2,
    ...                      "metric": "ICC(A,1)", "stable": [True, False, True, True]})
    >>> stable_by_perturbation(rows)
      feature  noise    all
    0       f   True  False
    1       g   True   True
    """
    settings = resolve_settings(settings, **overrides)
    rows = reliability[reliability[METRIC].isin(_verdict_metric_names(settings))]
    order = list(dict.fromkeys(rows[PERTURBATION]))
    wide = rows.groupby([FEATURE, PERTURBATION], sort=False)[STABLE].all().unstack(PERTURBATION)
    wide = wide.reindex(columns=order).fillna(False).astype(bool).sort_index()
    wide.columns.name = None
    return wide.reset_index()
