"""Vectorised agreement statistics on features x cases x conditions arrays (complete cases only)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from harmony.core.schema import ICC_METRICS
from harmony.reliability.settings import _ICC_AK, CCC, COV, RANGE

__all__: list[str] = []  # array kernels of agreement.py and table.py; their functions are the public API

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
        # v is homogeneous of degree 0 in (msj, mse): scaled by their maximum, squares cannot overflow
        top = np.maximum(msj, mse)
        sj, se = np.where(top > 0, msj / top, msj), np.where(top > 0, mse / top, mse)
        v = df_e * (k * icc2 * sj + a * se) ** 2 / (df_b * k**2 * icc2**2 * sj**2 + a**2 * se**2)
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
    """Mean over cases (NaN cases left out) of a quantity >= 0, its interval, and the count of cases used.

    The interval is the Student-t interval of log(mean) by the delta method, se(log m) = sem / m, mapped
    back: [m / exp(t se), m exp(t se)]. It is never below 0 (a symmetric t interval on a CoV or a range
    can be: -38 for a mean CoV of 12 over few cases), and it is wider above than below, as a skewed
    positive mean's is. A mean of 0 (no case varies) has the interval [0, 0].
    """
    used = np.isfinite(per_case).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # features without a usable case: all-NaN rows
        mean = np.nanmean(per_case, axis=1)
        sem = np.nanstd(per_case, axis=1, ddof=1) / np.sqrt(used)
        spread = np.exp(stats.t.ppf(0.5 + confidence / 2, np.maximum(used - 1, 1)) * sem / mean)
        low, high = np.where(mean > 0, mean / spread, 0.0), np.where(mean > 0, mean * spread, 0.0)
    nan = np.isnan(mean) | np.isnan(sem)
    return mean, np.where(nan, np.nan, low), np.where(nan, np.nan, high), used


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


def _icc_results(x: np.ndarray, confidence: float, min_cases: int = 3) -> _Results:
    res = _Results(ICC_METRICS, x.shape[0])
    for feats, sub in _screen(x, res, min_cases=min_cases):
        _store_icc(res, feats, sub, confidence)
    return res


def _group_results(x: np.ndarray, settings: Mapping[str, Any], rng: np.random.Generator) -> _Results:
    """All metrics of one perturbation group; x is (features, cases, conditions), NaN where missing."""
    conf = settings["confidence"]
    res = _Results(ICC_METRICS + (CCC, COV, RANGE), x.shape[0])
    for feats, sub in _screen(x, res, min_cases=max(2, settings.get("min_cases", 2))):
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


def _pairwise(pair: np.ndarray, confidence: float) -> _Results:
    """Lin's CCC of (features, cases, [reference, other])."""
    res = _Results((CCC,), pair.shape[0])
    for feats, sub in _screen(pair, res, min_cases=3):
        res.set(CCC, feats, *_lin_ccc(sub[:, :, 0], sub[:, :, 1], confidence), sub.shape[1])
    return res
