"""Feature reliability under perturbation: ICC (six forms), Lin's CCC, CoV, categories and verdicts.

Layout
------
Cases are the ICC *targets*; perturbation *conditions* are the *raters*. A condition is one
(``variant_id``, ``repeat``) pair, so repeats of a stochastic variant fold into the raters as distinct
conditions. The original enters once, as its lowest repeat (repeats of the identity chain replay the same
computation). Every statistic is computed for all features at once on a (features x cases x conditions)
array; a feature missing for some tasks is computed on its complete cases (cases with every condition of
the group present and finite), and ``n_cases`` says how many. Features sharing the same set of complete
cases are computed together, so the usual case (one pattern, or a few) stays fully vectorised.

Statistics
----------
- ICC: the six Shrout & Fleiss (1979) / McGraw & Wong (1996) forms, labelled as pingouin 0.7.0 labels
  them (``ICC(1,1) ICC(A,1) ICC(C,1) ICC(1,k) ICC(A,k) ICC(C,k)``), from the two-way ANOVA mean squares,
  with McGraw & Wong's F-based confidence intervals (the formulas pingouin uses, unrounded).
- CCC: Lin's (1989) concordance correlation coefficient of each condition against the original, with
  Lin's asymptotic interval on Fisher's z (Lin 1989, corrected 2000); and for a perturbation group the
  *overall* CCC of Barnhart, Haber & Song (2002) across the original and the group's conditions (equal to
  Lin's CCC for two conditions), with a percentile case-bootstrap interval (``bootstrap`` resamples of
  the complete cases, drawn from an explicit :class:`numpy.random.Generator`).
- CoV: per case, the standard deviation across conditions (``ddof=1``) over the absolute mean across
  conditions; summarised as the mean over cases (cases whose mean is exactly 0 are left out), with a
  Student-t interval of that mean. ``range``: per case, max minus min across conditions (feature units),
  summarised the same way; it is descriptive and never flagged.

ICC(A,k) follows McGraw & Wong (as pingouin does) except where ICC(A,1) < -1/(k-1) (agreement far below
chance): there its denominator is <= 0, pingouin returns a value above 1, and harmony returns ``undefined``
with the reason. A Spearman-Brown bound below that point is -inf (the interval is unbounded below).

Categories: ICC after Koo & Li (2016) (poor < 0.5 <= moderate < 0.75 <= good < 0.9 <= excellent), CCC
after McBride (2005) (poor < 0.90 <= moderate < 0.95 <= substantial < 0.99 <= almost perfect), CoV
``low``/``high`` against ``cov_max``. They are judged on the conservative bound of the interval by default
(the lower bound for ICC and CCC, the upper bound for CoV; ``judge_on = "estimate"`` judges the point
estimate). A statistic that cannot be computed has category ``undefined``, ``stable`` false and a reason.
A feature's verdict (:func:`feature_verdicts`) is stable when every metric named in ``verdict`` (by default
the configured ICC form only) is stable under every perturbation group, ``all`` included.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from harmony import schema
from harmony.config import Field, Section, apply_overrides, load_experiment, validate
from harmony.errors import ConfigError, SchemaError
from harmony.schema import (
    CASE_ID, CATEGORY, CI_HIGH, CI_LOW, ESTIMATE, FEATURE, ICC_METRICS, KIND, METRIC, N_CASES, N_VARIANTS,
    ORIGINAL, PERTURBATION, REASON, REPEAT, STABLE, VALUE, VARIANT_ID,
)
from harmony.progress import progress_bar

#: The perturbation group holding every variant.
ALL = "all"
CCC, COV, RANGE = schema.RELIABILITY_METRICS[len(ICC_METRICS):]
UNDEFINED = "undefined"
_ICC_AK = ICC_METRICS[4]  # the one form that can lack a value (see _icc_arrays)
#: Seed of the CCC bootstrap when no generator is given.
DEFAULT_SEED = 0

ICC_CATEGORIES = ("poor", "moderate", "good", "excellent")  # Koo & Li 2016
CCC_CATEGORIES = ("poor", "moderate", "substantial", "almost perfect")  # McBride 2005
COV_CATEGORIES = ("low", "high")
RANGE_CATEGORY = "descriptive"
_VERDICT_METRICS = ("icc", "ccc", "cov")


def _three_increasing(values: list) -> str | None:
    ok = len(values) == 3 and all(0 <= v <= 1 for v in values) and values[0] < values[1] < values[2]
    return None if ok else "expected three increasing values in [0, 1]"


SETTINGS = Section(
    {
        "icc": Field(str, "ICC(A,1)", choices=ICC_METRICS, doc="ICC form used for the verdict."),
        "judge_on": Field(str, "ci_low", choices=("ci_low", "estimate"),
                          doc="Judge categories on the conservative CI bound (lower for ICC/CCC, upper for "
                              "CoV) or on the point estimate."),
        "confidence": Field(float, 0.95, min=0.5, max=0.999, doc="Confidence level of every interval."),
        "icc_thresholds": Field(list, [0.5, 0.75, 0.9], item=Field(float), check=_three_increasing,
                                doc="Koo & Li bounds between poor, moderate, good and excellent."),
        "icc_min": Field(float, 0.75, min=0.0, max=1.0, doc="An ICC row is stable when its judged value >= this."),
        "ccc_thresholds": Field(list, [0.90, 0.95, 0.99], item=Field(float), check=_three_increasing,
                                doc="McBride bounds between poor, moderate, substantial and almost perfect."),
        "ccc_min": Field(float, 0.90, min=0.0, max=1.0, doc="A CCC row is stable when its judged value >= this."),
        "cov_max": Field(float, 0.10, min=0.0, min_exclusive=True,
                         doc="A CoV row is stable (low) when its judged value <= this."),
        "verdict": Field(list, ["icc"], item=Field(str, choices=_VERDICT_METRICS), min_items=1,
                         doc="Metrics every perturbation must pass for a feature to be stable."),
        "bootstrap": Field(int, 1000, min=100, doc="Case-bootstrap resamples for the overall CCC interval."),
    }
)


# -- settings -------------------------------------------------------------------------------------------

def resolve_settings(settings: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Validate ``settings`` (a ``[reliability]`` section) with keyword overrides; defaults filled in.

    >>> resolve_settings(icc="ICC(C,1)")["icc"]
    'ICC(C,1)'
    >>> resolve_settings({"judge_on": "upper"})
    Traceback (most recent call last):
    ...
    harmony.errors.ConfigError: <settings>: reliability.judge_on: must be one of ['ci_low', 'estimate'], got 'upper'
    """
    merged = {**(settings or {}), **overrides}
    return validate(merged, SETTINGS, file="<settings>", prefix="reliability")


def load_settings(config: str | os.PathLike | None = None,
                  overrides: Sequence[str] = ()) -> tuple[dict[str, Any], int]:
    """The ``[reliability]`` settings and the experiment seed, from an experiment config and ``--set`` text.

    Without a config only ``reliability.*`` overrides are accepted, and the seed is :data:`DEFAULT_SEED`.
    """
    if config is not None:
        experiment = load_experiment(config, overrides)
        return experiment["reliability"], experiment["experiment"]["seed"]
    raw, _ = apply_overrides({}, overrides)
    other = sorted(set(raw) - {"reliability"})
    if other:
        raise ConfigError(f"--set: only reliability.* keys can be set without --config, got {other[0]!r}")
    return validate(raw.get("reliability", {}), SETTINGS, file="--set", prefix="reliability"), DEFAULT_SEED


# -- array statistics (features x cases x conditions, complete cases only) ------------------------------

def _f_bound(f_ratio: np.ndarray, k: float) -> np.ndarray:
    """(F - 1) / (F + k - 1), which tends to 1 as F grows without bound."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isposinf(f_ratio), 1.0, (f_ratio - 1) / (f_ratio + k - 1))


def _spearman_brown(icc1: np.ndarray, k: int) -> np.ndarray:
    """The k-rater value of a single-rater bound; -inf below -1/(k-1), where the map falls to -inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(1 + icc1 * (k - 1) > 0, icc1 * k / (1 + icc1 * (k - 1)), -np.inf)


def _icc_arrays(x: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates and interval bounds, each (6, features), in :data:`schema.ICC_METRICS` order."""
    _, n, k = x.shape
    rows = x @ np.full(k, 1 / k)  # means by matrix products: several times faster than .mean here
    cols = np.full(n, 1 / n) @ x
    grand = rows.mean(axis=1)
    ss_rows = k * np.square(rows - grand[:, None]).sum(axis=1)
    ss_cols = n * np.square(cols - grand[:, None]).sum(axis=1)
    resid = x - rows[:, :, None]
    resid -= (cols - grand[:, None])[:, None, :]
    ss_err = np.einsum("fij,fij->f", resid, resid)
    df_b, df_j, df_e, df_w = n - 1, k - 1, (n - 1) * (k - 1), n * (k - 1)
    msb, msj, mse = ss_rows / df_b, ss_cols / df_j, ss_err / df_e
    msw = (ss_cols + ss_err) / df_w
    q = 0.5 + confidence / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        icc1 = (msb - msw) / (msb + (k - 1) * msw)
        icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        icc3 = (msb - mse) / (msb + (k - 1) * mse)
        icc1k = (msb - msw) / msb
        # Below -1/(k-1), ICC(A,1) has no k-rater form: the denominator is <= 0 (and the ratio would exceed 1).
        den2k = msb + (msj - mse) / n
        icc2k = np.where(den2k > 0, (msb - mse) / den2k, np.nan)
        icc3k = (msb - mse) / msb
        f1, f3 = msb / msw, msb / mse
        f1_low, f1_up = f1 / special.fdtri(df_b, df_w, q), f1 * special.fdtri(df_w, df_b, q)
        f3_low, f3_up = f3 / special.fdtri(df_b, df_e, q), f3 * special.fdtri(df_e, df_b, q)
        # McGraw & Wong's approximate df for ICC(A,1), written with mse^2 factored in so mse = 0 stays finite.
        a = n * (1 + (k - 1) * icc2) - k * icc2
        v = df_e * (k * icc2 * msj + a * mse) ** 2 / (df_b * k**2 * icc2**2 * msj**2 + a**2 * mse**2)
        f2_up = special.fdtri(df_b, v, q)
        f2_low = special.fdtri(v, df_b, q)
        denom = k * msj + (k * n - k - n) * mse
        low2 = n * (msb - f2_up * mse) / (f2_up * denom + n * msb)
        up2 = n * (f2_low * msb - mse) / (denom + n * f2_low * msb)
        identical = (msj == 0) & (mse == 0)  # every condition gives the same value: ICC(A) is exactly 1
        low2, up2 = np.where(identical, 1.0, low2), np.where(identical, 1.0, up2)
        estimate = np.stack([icc1, icc2, icc3, icc1k, icc2k, icc3k])
        low = np.stack([_f_bound(f1_low, k), low2, _f_bound(f3_low, k), 1 - 1 / f1_low,
                        _spearman_brown(low2, k), 1 - 1 / f3_low])
        high = np.stack([_f_bound(f1_up, k), up2, _f_bound(f3_up, k), 1 - 1 / f1_up,
                         _spearman_brown(up2, k), 1 - 1 / f3_up])
    return estimate, low, high


def _occc(x: np.ndarray) -> np.ndarray:
    """Barnhart et al. (2002) overall CCC of (features, cases, conditions), moments with 1/n.

    2 sum_{j<l} s_jl = var(row sums) - sum_j s_j^2 and sum_{j<l} (m_j - m_l)^2 = J sum_j (m_j - mean m)^2.
    """
    j = x.shape[2]
    means = x.mean(axis=1)
    centred = x - means[:, None, :]
    var_sum = np.square(centred).mean(axis=1).sum(axis=1)
    var_rows = np.square(centred.sum(axis=2)).mean(axis=1)
    spread = np.square(means - means.mean(axis=1, keepdims=True)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (var_rows - var_sum) / ((j - 1) * var_sum + j * spread)


def _occc_bootstrap(x: np.ndarray, confidence: float, n_boot: int, rng: np.random.Generator,
                    chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Percentile case-bootstrap interval of the overall CCC, all features at once.

    Each resample draws ``n`` cases with replacement (the same draws for every feature) and is evaluated
    through case counts, so no resampled array is materialised. Values are centred and scaled per feature
    first (the OCCC is invariant to a common shift and scale), which keeps the moment sums accurate.
    """
    nf, n, j = x.shape
    centre = x.mean(axis=(1, 2), keepdims=True)
    scale = x.std(axis=(1, 2), keepdims=True)
    z = (x - centre) / np.where(scale > 0, scale, 1.0)
    flat = z.transpose(1, 0, 2).reshape(n, nf * j)
    row_sums = z.sum(axis=2).T
    out = np.empty((n_boot, nf))
    for start in range(0, n_boot, chunk):
        draws = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        offsets = (draws + n * np.arange(len(draws))[:, None]).ravel()
        counts = np.bincount(offsets, minlength=draws.size).reshape(draws.shape) / n
        m1 = (counts @ flat).reshape(-1, nf, j)
        var_j = (counts @ np.square(flat)).reshape(-1, nf, j) - m1**2
        s1, s2 = counts @ row_sums, counts @ np.square(row_sums)
        var_sum = var_j.sum(axis=2)
        spread = np.square(m1 - m1.mean(axis=2, keepdims=True)).sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + len(draws)] = (s2 - s1**2 - var_sum) / ((j - 1) * var_sum + j * spread)
    alpha = 1 - confidence
    out[~np.isfinite(out)] = np.nan  # a resample of one repeated case has no variance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature whose every resample is degenerate
        low, high = np.nanquantile(out, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _lin_ccc(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lin's CCC of paired (features, cases) arrays with Lin's z-transform interval (needs >= 3 cases)."""
    n = a.shape[1]
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    va, vb = a.var(axis=1), b.var(axis=1)
    sab = ((a - ma[:, None]) * (b - mb[:, None])).mean(axis=1)
    d2 = (ma - mb) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = 2 * sab / (va + vb + d2)
        r = sab / np.sqrt(va * vb)
        u2 = d2 / np.sqrt(va * vb)
        one = 1 - rc**2
        var_z = ((1 - r**2) * rc**2 / (one * r**2) + 2 * rc**3 * (1 - rc) * u2 / (r * one**2)
                 - rc**4 * u2**2 / (2 * r**2 * one**2)) / (n - 2)
        half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(var_z)
        z = np.arctanh(rc)
        low, high = np.tanh(z - half), np.tanh(z + half)
    perfect = rc == 1
    return rc, np.where(perfect, 1.0, low), np.where(perfect, 1.0, high)


def _case_mean_interval(per_case: np.ndarray, confidence: float) -> tuple[np.ndarray, ...]:
    """Mean over cases (NaN cases left out), its Student-t interval, and the count of cases used."""
    used = np.isfinite(per_case).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # features without a usable case: all-NaN rows
        mean = np.nanmean(per_case, axis=1)
        sem = np.nanstd(per_case, axis=1, ddof=1) / np.sqrt(used)
    half = stats.t.ppf(0.5 + confidence / 2, np.maximum(used - 1, 1)) * sem
    return mean, mean - half, mean + half, used


def _cov_range(x: np.ndarray, confidence: float) -> dict[str, tuple[np.ndarray, ...]]:
    means = x.mean(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.where(means != 0, x.std(axis=2, ddof=1) / np.abs(means), np.nan)
    return {COV: _case_mean_interval(cov, confidence),
            RANGE: _case_mean_interval(np.ptp(x, axis=2), confidence)}


# -- from arrays to per-feature results ---------------------------------------------------------------

class _Results:
    """Per-metric (features,) arrays: estimate, ci_low, ci_high, n_cases and the reason when undefined."""

    def __init__(self, metrics: Sequence[str], n_features: int) -> None:
        self.values = {m: np.full((3, n_features), np.nan) for m in metrics}
        self.n_cases = {m: np.zeros(n_features, dtype=np.int64) for m in metrics}
        self.undefined = {m: np.full(n_features, "", dtype=object) for m in metrics}

    def set(self, metric: str, idx: np.ndarray, estimate, low, high, n_cases) -> None:
        """Store values; a feature already failed for ``metric`` keeps NaN values and its reason."""
        ok = self.undefined[metric][idx] == ""
        self.values[metric][:, idx[ok]] = np.stack([estimate, low, high])[:, ok]
        self.n_cases[metric][idx] = n_cases

    def fail(self, idx: np.ndarray, reason: str, metrics: Sequence[str] | None = None) -> None:
        """Mark features undefined for ``metrics`` (default all); the first reason given is kept."""
        for m in metrics or self.values:
            self.undefined[m][idx] = np.where(self.undefined[m][idx] == "", reason, self.undefined[m][idx])
            self.values[m][:, idx] = np.nan


def _patterns(x: np.ndarray):
    """Yield (feature indices, complete-case indices) for each distinct pattern of complete cases."""
    complete = ~np.isnan(x @ np.ones(x.shape[2]))  # x holds no infinities (see _dense)
    if complete.all():
        yield np.arange(x.shape[0]), np.arange(x.shape[1])
        return
    packed = np.packbits(complete, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    for p, row in enumerate(first):
        yield np.flatnonzero(inverse == p), np.flatnonzero(complete[row])


def _screen(x: np.ndarray, results: _Results, min_cases: int = 2):
    """Yield (feature indices, complete data) for features that can be computed; mark the others undefined.

    Features without variation between cases are yielded (their CoV and range exist) but marked undefined
    for the ICC and CCC metrics of ``results``.
    """
    k = x.shape[2]
    if k < 2:
        results.fail(np.arange(x.shape[0]), f"only {k} condition(s); needs >= 2")
        return
    for feats, cases in _patterns(x):
        if len(cases) < min_cases:
            results.fail(feats, f"{len(cases)} complete case(s); needs >= {min_cases}")
            continue
        sub = x if len(feats) == x.shape[0] and len(cases) == x.shape[1] else x[np.ix_(feats, cases)]
        flat = (sub == sub[:, :1, :]).all(axis=(1, 2))  # every case equals the first under each condition
        constant = flat & (sub[:, 0, :] == sub[:, 0, :1]).all(axis=1)
        results.fail(feats[constant], "constant: every case and condition has the same value")
        # ICC and CCC weigh the variation between cases against the rest: without it they are 0/0
        flat &= ~constant
        results.fail(feats[flat], "no variation between cases: under each condition every case has the same "
                     "value", [m for m in results.values if m in ICC_METRICS or m == CCC])
        if (~constant).any():
            yield feats[~constant], sub[~constant]


def _store_icc(res: _Results, feats: np.ndarray, sub: np.ndarray, confidence: float) -> None:
    estimate, low, high = _icc_arrays(sub, confidence)
    for i, metric in enumerate(ICC_METRICS):
        res.set(metric, feats, estimate[i], low[i], high[i], sub.shape[1])
    no_k_form = np.isnan(estimate[ICC_METRICS.index(_ICC_AK)])
    res.fail(feats[no_k_form], "msb + (msj - mse) / n <= 0: agreement below chance has no k-rater form",
             [_ICC_AK])


def _icc_results(x: np.ndarray, confidence: float) -> _Results:
    res = _Results(ICC_METRICS, x.shape[0])
    for feats, sub in _screen(x, res):
        _store_icc(res, feats, sub, confidence)
    return res


def _group_results(x: np.ndarray, settings: Mapping[str, Any], rng: np.random.Generator) -> _Results:
    """All metrics of one perturbation group; x is (features, cases, conditions), NaN where missing."""
    conf = settings["confidence"]
    res = _Results(ICC_METRICS + (CCC, COV, RANGE), x.shape[0])
    for feats, sub in _screen(x, res):
        _store_icc(res, feats, sub, conf)
        n = sub.shape[1]
        for metric, (mean, low_, high_, used) in _cov_range(sub, conf).items():
            res.set(metric, feats, mean, low_, high_, used)
        if n < 3:
            res.fail(feats, f"{n} complete cases; the CCC interval needs >= 3", [CCC])
        else:
            res.set(CCC, feats, _occc(sub), *_occc_bootstrap(sub, conf, settings["bootstrap"], rng), n)
    for metric in (COV, RANGE):  # cases with a zero mean leave the CoV; none left is undefined
        few = (res.n_cases[metric] < 2) & (res.undefined[metric] == "")
        res.fail(np.flatnonzero(few), "fewer than 2 cases with a non-zero mean across conditions", [metric])
    return res


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


def _rows(features: np.ndarray, perturbation: str, n_conditions: int, res: _Results,
          settings: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
    frames = []
    for metric, values in res.values.items():
        cats, stable, reasons = _classify(metric, perturbation, values, res.undefined[metric], settings)
        frames.append(pd.DataFrame({
            FEATURE: features, **(extra or {PERTURBATION: perturbation}), METRIC: metric,
            ESTIMATE: values[0], CI_LOW: values[1], CI_HIGH: values[2], N_CASES: res.n_cases[metric],
            N_VARIANTS: n_conditions, CATEGORY: cats, STABLE: stable, REASON: reasons,
        }))
    return pd.concat(frames, ignore_index=True)


# -- long tables in, arrays out -----------------------------------------------------------------------

def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_columns(data: pd.DataFrame, columns: Sequence[str | None]) -> None:
    if not isinstance(data, pd.DataFrame):
        raise SchemaError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in columns if c is not None and c not in data.columns]
    if missing:
        raise SchemaError(f"data has no column(s) {missing}; it has {list(map(str, data.columns))}")


def _factorize(data: pd.DataFrame, column: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and labels of a column (sorted, or in category order for a categorical column, whose
    codes are used as they are: no hashing); no column means one label, ``None``."""
    if column is None:
        return np.zeros(len(data), dtype=np.intp), np.array([None], dtype=object)
    series = data[column]
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes, labels = series.cat.codes.to_numpy(), np.asarray(series.cat.categories)
        if len(codes) and codes.min() >= 0:
            used = np.bincount(codes, minlength=len(labels)) > 0
            if not used.all():  # unused categories would be all-missing features, cases or raters
                codes, labels = (np.cumsum(used) - 1)[codes], labels[used]
    else:
        codes, labels = pd.factorize(series, sort=True)
    if (codes < 0).any():
        raise SchemaError(f"column {column!r} has missing values")
    return codes, np.asarray(labels)


def _dense(codes: Sequence[np.ndarray], labels: Sequence[np.ndarray], values: np.ndarray,
           names: Sequence[str | None]) -> np.ndarray:
    """Scatter values into a NaN-filled array indexed by the codes; a repeated index is an error."""
    shape = tuple(len(u) for u in labels)
    flat = codes[0].astype(np.intp)
    for code, size in zip(codes[1:], shape[1:]):  # row-major flat index, in place
        flat *= size
        flat += code
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    if (counts > 1).any():
        at = np.unravel_index(int(np.argmax(counts)), shape)
        where = ", ".join(f"{name}={np.asarray(u[i]).tolist()!r}"
                          for name, u, i in zip(names, labels, at) if name is not None)
        raise SchemaError(f"more than one value for {where}")
    x = np.full(int(np.prod(shape)), np.nan)
    x[flat] = values
    x[~np.isfinite(x)] = np.nan
    return x.reshape(shape)


def _to_array(data: pd.DataFrame, features: str | None, targets: str, raters: str, ratings: str):
    """(feature labels, target labels, rater labels, array (features, targets, raters) with NaN holes)."""
    _check_columns(data, [features, targets, raters, ratings])
    values = pd.to_numeric(data[ratings], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & data[ratings].notna().to_numpy()
    if bad.any():
        raise SchemaError(f"column {ratings!r}: expected numbers, got {data[ratings][bad].iloc[0]!r}")
    names = (features, targets, raters)
    codes, labels = zip(*(_factorize(data, c) for c in names))
    return (*labels, _dense(codes, labels, values, names))


def _tidy(res: _Results, metrics: Sequence[str], feature_labels, features: str | None, k: int,
          extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Feature-major rows: for each feature, one row per metric."""
    values = np.stack([res.values[m] for m in metrics], axis=2)  # (3, features, metrics)
    m = len(metrics)
    cols = {} if features is None else {features: np.repeat(feature_labels, m)}
    return pd.DataFrame({
        **cols, **(extra or {}), METRIC: np.tile(np.array(metrics, dtype=object), len(feature_labels)),
        ESTIMATE: values[0].ravel(), CI_LOW: values[1].ravel(), CI_HIGH: values[2].ravel(),
        N_CASES: np.stack([res.n_cases[x] for x in metrics], axis=1).ravel(), N_VARIANTS: k,
        REASON: np.stack([res.undefined[x] for x in metrics], axis=1).ravel().astype(str),
    })


def icc(data: pd.DataFrame, targets: str, raters: str, ratings: str, *, features: str | None = None,
        confidence: float = 0.95) -> pd.DataFrame:
    """The six intraclass correlations with F-based intervals, for one or many features at once.

    Parameters
    ----------
    data : DataFrame
        Long format: one rating a row.
    targets, raters, ratings : str
        Columns of the rated objects (cases), the raters (conditions) and the numeric ratings.
    features : str, optional
        Column naming the feature of each row; every feature is computed at once.
    confidence : float
        Confidence level of the intervals (McGraw & Wong 1996, as in pingouin, unrounded).

    Returns
    -------
    DataFrame
        One row per (feature,) metric: ``metric`` (pingouin's labels ``ICC(1,1) ... ICC(C,k)``),
        ``estimate``, ``ci_low``, ``ci_high``, ``n_cases`` (complete targets used), ``n_variants`` (raters)
        and ``reason`` (empty, or why the estimate is undefined: constant ratings, < 2 complete targets).

    Examples
    --------
    Shrout & Fleiss (1979), Table 2: six targets rated by four judges.

    >>> ratings = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> data = pd.DataFrame([(t, j, r) for t, row in enumerate(ratings) for j, r in enumerate(row)],
    ...                     columns=["target", "judge", "rating"])
    >>> icc(data, "target", "judge", "rating")[["metric", "estimate", "ci_low"]].round(2)
         metric  estimate  ci_low
    0  ICC(1,1)      0.17   -0.13
    1  ICC(A,1)      0.29    0.02
    2  ICC(C,1)      0.71    0.34
    3  ICC(1,k)      0.44   -0.88
    4  ICC(A,k)      0.62    0.07
    5  ICC(C,k)      0.91    0.68
    """
    _check_confidence(confidence)
    feature_labels, _, rater_labels, x = _to_array(data, features, targets, raters, ratings)
    return _tidy(_icc_results(x, confidence), ICC_METRICS, feature_labels, features, len(rater_labels))


def ccc(data: pd.DataFrame, targets: str, raters: str, ratings: str, *, features: str | None = None,
        reference: Any = None, confidence: float = 0.95, n_boot: int = 1000,
        rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Lin's concordance correlation: each rater against ``reference``, or the overall CCC of all raters.

    Parameters
    ----------
    data : DataFrame
        Long format: one rating a row.
    targets, raters, ratings : str
        Columns of the rated objects (cases), the raters (conditions) and the numeric ratings.
    features : str, optional
        Column naming the feature of each row; every feature is computed at once.
    reference : optional
        A value of ``raters``. Given: Lin's (1989) CCC of every other rater against it, with Lin's
        asymptotic interval on Fisher's z (Lin 1989/2000), one row per rater. Absent: the overall CCC of
        Barnhart, Haber & Song (2002) across all raters (Lin's CCC for two raters), with a percentile
        case-bootstrap interval of ``n_boot`` resamples drawn from ``rng``.
    confidence : float
        Confidence level of the intervals.
    n_boot : int
        Bootstrap resamples for the overall CCC.
    rng : numpy.random.Generator, optional
        Source of the bootstrap draws; default ``numpy.random.default_rng(DEFAULT_SEED)``.

    Returns
    -------
    DataFrame
        ``metric`` "CCC", ``estimate``, ``ci_low``, ``ci_high``, ``n_cases``, ``n_variants`` (raters
        compared) and ``reason`` (empty unless undefined), per feature (and rater, with a reference).

    Examples
    --------
    Lin's CCC of x = (1, 2, 3) and y = (2, 3, 5) is 2 * 1 / (2/3 + 14/9 + 16/9) = 0.5:

    >>> data = pd.DataFrame({"case": [0, 1, 2] * 2, "rater": ["x"] * 3 + ["y"] * 3,
    ...                      "value": [1, 2, 3, 2, 3, 5]})
    >>> ccc(data, "case", "rater", "value", reference="x")[["rater", "estimate"]]
      rater  estimate
    0     y       0.5
    >>> round(float(ccc(data, "case", "rater", "value")["estimate"].iloc[0]), 12)
    0.5
    """
    _check_confidence(confidence)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    feature_labels, _, rater_labels, x = _to_array(data, features, targets, raters, ratings)
    if reference is None:
        rng = np.random.default_rng(DEFAULT_SEED) if rng is None else rng
        res = _Results((CCC,), x.shape[0])
        for feats, sub in _screen(x, res, min_cases=3):
            res.set(CCC, feats, _occc(sub), *_occc_bootstrap(sub, confidence, n_boot, rng), sub.shape[1])
        return _tidy(res, (CCC,), feature_labels, features, len(rater_labels))
    where = np.flatnonzero(rater_labels == reference)
    if not len(where):
        raise SchemaError(f"reference {reference!r} is not a value of column {raters!r}")
    frames = []
    for r, label in enumerate(rater_labels):
        if r == where[0]:
            continue
        res = _pairwise(x[:, :, [where[0], r]], confidence)
        frames.append(_tidy(res, (CCC,), feature_labels, features, 2, {raters: label}))
    return pd.concat(frames, ignore_index=True)


def _pairwise(pair: np.ndarray, confidence: float) -> _Results:
    """Lin's CCC of (features, cases, [reference, other])."""
    res = _Results((CCC,), pair.shape[0])
    for feats, sub in _screen(pair, res, min_cases=3):
        res.set(CCC, feats, *_lin_ccc(sub[:, :, 0], sub[:, :, 1], confidence), sub.shape[1])
    return res


# -- the features table -------------------------------------------------------------------------------

class _Design:
    """The features table as (features, cases, conditions), each condition's variant, repeat and kind."""

    def __init__(self, features: pd.DataFrame, variants: pd.DataFrame | None) -> None:
        features = schema.FEATURES.validate(features, "reliability input")
        vcodes, vlabels = _factorize(features, VARIANT_ID)
        pairs = np.stack([vcodes, features[REPEAT].to_numpy()], axis=1)
        conditions, cond_code = np.unique(pairs, axis=0, return_inverse=True)
        self.variant = vlabels[conditions[:, 0]]
        self.repeat = conditions[:, 1]
        (fcodes, self.feature_names), (ccodes, cases) = _factorize(features, FEATURE), _factorize(features, CASE_ID)
        labels = (self.feature_names, cases, np.array([f"{v} repeat {r}" for v, r in zip(self.variant, self.repeat)]))
        self.x = _dense((fcodes, ccodes, cond_code.ravel()), labels, features[VALUE].to_numpy(dtype=float),
                        (FEATURE, CASE_ID, "condition"))
        if ORIGINAL not in set(self.variant):
            raise SchemaError(f"features table has no rows with {VARIANT_ID} {ORIGINAL!r}; "
                              "reliability compares every variant with the original")
        self.kind = self._kinds(variants)
        originals = np.flatnonzero(self.variant == ORIGINAL)
        self.reference = int(originals[np.argmin(self.repeat[originals])])

    def _kinds(self, variants: pd.DataFrame | None) -> np.ndarray:
        if variants is None:
            return np.where(self.variant == ORIGINAL, ORIGINAL, ALL).astype(object)
        variants = schema.VARIANTS.validate(variants, "reliability variants")
        kinds = dict(zip(variants[VARIANT_ID], variants[KIND]))
        unknown = sorted(set(self.variant) - set(kinds) - {ORIGINAL})
        if unknown:
            raise SchemaError(f"variants table has no row for {VARIANT_ID} {unknown[0]!r} "
                              f"({len(unknown)} variant(s) of the features table missing)")
        return np.array([ORIGINAL if v == ORIGINAL else kinds[v] for v in self.variant], dtype=object)

    def groups(self) -> dict[str, np.ndarray]:
        """Condition indices of each perturbation group: every kind (with the original) and ``all``."""
        perturbed = self.kind != ORIGINAL
        kinds = sorted(set(self.kind[perturbed]) - {ALL}, key=lambda k: ("+" in k, k))
        out = {k: np.flatnonzero(self.kind == k) for k in kinds}
        out[ALL] = np.flatnonzero(perturbed)
        return {k: np.concatenate([[self.reference], idx]) for k, idx in out.items()}


def reliability_table(features: pd.DataFrame, variants: pd.DataFrame | None = None, *,
                      settings: Mapping[str, Any] | None = None, rng: np.random.Generator | None = None,
                      progress: bool | None = False, **overrides: Any) -> pd.DataFrame:
    """Every reliability metric of every feature under every perturbation group (schema.RELIABILITY).

    Parameters
    ----------
    features : DataFrame
        The features table (schema.FEATURES). Missing or non-finite values are missing tasks.
    variants : DataFrame, optional
        The variants table (schema.VARIANTS), for each variant's ``kind``. Without it every non-original
        variant is of kind ``all``.
    settings : mapping, optional
        A ``[reliability]`` section (:data:`SETTINGS`); keyword ``overrides`` (e.g. ``icc="ICC(C,1)"``)
        are merged over it.
    rng : numpy.random.Generator, optional
        Draws of the overall-CCC bootstrap; default ``numpy.random.default_rng(DEFAULT_SEED)``.
    progress : bool, optional
        progress bar over the perturbation groups (None: only on a terminal).

    Returns
    -------
    DataFrame
        One row per (feature, perturbation, metric); ``perturbation`` is a variant kind (its variants
        plus the original) or ``all``; metrics are the six ICC forms, ``CCC`` (overall), ``CoV`` and
        ``range``; ``n_variants`` counts the conditions (original included); ``reason`` explains the
        category.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> truth = rng.normal(size=8)
    >>> rows = [(f"c{i}", "s", v, 0, "f", truth[i] + e * rng.normal())
    ...         for v, e in (("original", 0), ("n1", 0.1), ("n2", 0.1)) for i in range(8)]
    >>> feats = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> kinds = pd.DataFrame({"variant_id": ["original", "n1", "n2"], "kind": ["original", "noise", "noise"],
    ...                       "params": "[]", "seed": 0})
    >>> table = reliability_table(feats, kinds, bootstrap=200)
    >>> icc_a1 = table[table["metric"] == "ICC(A,1)"].reset_index(drop=True)
    >>> icc_a1[["perturbation", "estimate", "ci_low", "category", "stable"]].round(3)
      perturbation  estimate  ci_low   category  stable
    0        noise     0.986   0.956  excellent    True
    1          all     0.986   0.956  excellent    True
    """
    settings = resolve_settings(settings, **overrides)
    rng = np.random.default_rng(DEFAULT_SEED) if rng is None else rng
    design = _Design(features, variants)
    frames = []
    for name, conditions in progress_bar(design.groups().items(), desc="reliability", unit="group",
                                         progress=progress):
        res = _group_results(design.x[:, :, conditions], settings, rng)
        frames.append(_rows(design.feature_names, name, len(conditions), res, settings))
    return schema.RELIABILITY.validate(pd.concat(frames, ignore_index=True), "reliability")


PAIRWISE = schema.TableSpec(
    "ccc_pairwise",
    schema._cols((FEATURE, "str"), (VARIANT_ID, "str"), (REPEAT, "int64"), (KIND, "str"), (METRIC, "str"),
                 (ESTIMATE, "float64", True), (CI_LOW, "float64", True), (CI_HIGH, "float64", True),
                 (N_CASES, "int64"), (N_VARIANTS, "int64"), (CATEGORY, "str"), (STABLE, "bool"),
                 (REASON, "str")),
    key=(FEATURE, VARIANT_ID, REPEAT),
    doc="Lin's CCC of each (variant, repeat) against the original, per feature.",
)


def pairwise_ccc(features: pd.DataFrame, variants: pd.DataFrame | None = None, *,
                 settings: Mapping[str, Any] | None = None, **overrides: Any) -> pd.DataFrame:
    """Lin's CCC of every (variant, repeat) condition against the original, per feature (:data:`PAIRWISE`).

    The original is its lowest repeat; intervals are Lin's z-transform intervals; categories and flags
    follow the CCC settings (``ccc_thresholds``, ``ccc_min``, ``judge_on``).
    """
    settings = resolve_settings(settings, **overrides)
    design = _Design(features, variants)
    frames = []
    for c in range(len(design.variant)):
        if c == design.reference:
            continue
        res = _pairwise(design.x[:, :, [design.reference, c]], settings["confidence"])
        extra = {VARIANT_ID: design.variant[c], REPEAT: design.repeat[c], KIND: design.kind[c]}
        frames.append(_rows(design.feature_names, f"{design.variant[c]} (repeat {design.repeat[c]})", 2, res,
                            settings, extra))
    if not frames:
        return PAIRWISE.empty()
    return PAIRWISE.validate(pd.concat(frames, ignore_index=True), "ccc_pairwise")


# -- verdicts and summaries ---------------------------------------------------------------------------

def _verdict_metric_names(settings: Mapping[str, Any]) -> list[str]:
    return [{"icc": settings["icc"], "ccc": CCC, "cov": COV}[m] for m in settings["verdict"]]


def feature_verdicts(reliability: pd.DataFrame, settings: Mapping[str, Any] | None = None,
                     **overrides: Any) -> pd.DataFrame:
    """One verdict per feature: stable when every verdict metric passes under every perturbation.

    Returns ``feature, stable, reason, worst_perturbation, metric, estimate, ci_low, ci_high, category,
    n_cases``; the last six describe the weakest row (an undefined row first, then the one furthest
    below, or nearest above, its threshold; among perturbation kinds before ``all``).

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


# -- the command ----------------------------------------------------------------------------------------

#: Files :func:`run` writes into its output directory.
OUTPUTS = {"reliability": "reliability.parquet", "pairwise": "ccc_pairwise.parquet",
           "verdicts": "stable_features.csv"}


def run(features_path: str | os.PathLike, out_dir: str | os.PathLike, *,
        variants_path: str | os.PathLike | None = None, settings: Mapping[str, Any] | None = None,
        seed: int = DEFAULT_SEED, progress: bool | None = None) -> dict[str, pd.DataFrame]:
    """``harmony reliability``: read the tables, compute, write :data:`OUTPUTS` and a manifest.

    Without ``variants_path`` a ``variants.parquet`` beside the features file is used when present;
    otherwise every non-original variant is of kind ``all``. The bootstrap draws from
    ``numpy.random.default_rng(seed)``.
    """
    from harmony.io import build_manifest, now_utc, read_table, write_manifest, write_table, write_text

    started = now_utc()
    settings = resolve_settings(settings)
    features = read_table(features_path, schema.FEATURES)
    beside = Path(features_path).with_name("variants.parquet")
    if variants_path is None and beside.is_file():
        variants_path = beside
    variants = None if variants_path is None else read_table(variants_path, schema.VARIANTS)
    table = reliability_table(features, variants, settings=settings, rng=np.random.default_rng(seed),
                              progress=progress)
    results = {"reliability": table, "pairwise": pairwise_ccc(features, variants, settings=settings),
               "verdicts": feature_verdicts(table, settings)}
    out = Path(out_dir)
    write_table(table, out / OUTPUTS["reliability"], schema.RELIABILITY)
    write_table(results["pairwise"], out / OUTPUTS["pairwise"], PAIRWISE)
    write_text(out / OUTPUTS["verdicts"], results["verdicts"].to_csv(index=False))
    n_features = len(results["verdicts"])
    write_manifest(out, build_manifest(
        command="reliability", config={"reliability": settings}, seeds={"bootstrap": seed}, started=started,
        tasks={"features": n_features, "stable": int(results["verdicts"][STABLE].sum())},
        inputs={"features": str(Path(features_path).resolve()),
                "variants": None if variants_path is None else str(Path(variants_path).resolve())},
    ))
    return results
