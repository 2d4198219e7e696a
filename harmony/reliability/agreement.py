"""pingouin-style ICC and CCC: a long DataFrame and column names in, a tidy DataFrame out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harmony.core.errors import SchemaError
from harmony.core.schema import (
    CI_HIGH,
    CI_LOW,
    ESTIMATE,
    ICC_METRICS,
    METRIC,
    N_CASES,
    N_VARIANTS,
    REASON,
)
from harmony.reliability.arrays import (
    _icc_results,
    _occc,
    _occc_bootstrap,
    _pairwise,
    _Results,
    _screen,
)
from harmony.reliability.settings import CCC, DEFAULT_SEED

__all__ = ["icc", "ccc"]

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
        confidence: float = 0.95, min_cases: int = 3) -> pd.DataFrame:
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
    min_cases : int, default 3
        Fewest complete targets a feature needs; with fewer its rows are undefined (as the CCC's are:
        with 2 targets the between-target spread is one difference and every interval is meaningless).

    Returns
    -------
    DataFrame
        One row per (feature,) metric: ``metric`` (pingouin's labels ``ICC(1,1) ... ICC(C,k)``),
        ``estimate``, ``ci_low``, ``ci_high``, ``n_cases`` (complete targets used), ``n_variants`` (raters)
        and ``reason`` (empty, or why the estimate is undefined: constant ratings, < ``min_cases`` complete
        targets).
        Targets missing a rating are left out (complete cases only), per feature.

    Raises
    ------
    SchemaError
        ``data`` is not a DataFrame, lacks a column, has a non-numeric rating, a missing label, or two
        ratings for one (feature, target, rater).
    ValueError
        ``confidence`` is not in (0, 1).

    See Also
    --------
    harmony.reliability_table : every metric per feature and perturbation kind of a features table.
    pingouin.intraclass_corr : the same six forms for one feature (harmony's values agree to 1e-15).

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
    if min_cases < 2:
        raise ValueError(f"min_cases must be >= 2 (an ICC needs two targets), got {min_cases!r}")
    feature_labels, _, rater_labels, x = _to_array(data, features, targets, raters, ratings)
    return _tidy(_icc_results(x, confidence, min_cases), ICC_METRICS, feature_labels, features, len(rater_labels))


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

    Raises
    ------
    SchemaError
        ``data`` is not a DataFrame, lacks a column, has a non-numeric rating or a repeated rating, or
        ``reference`` is not a value of ``raters``.
    ValueError
        ``confidence`` is not in (0, 1), or ``n_boot`` is below 1.

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
