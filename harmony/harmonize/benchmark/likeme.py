"""A generative model fitted to a user's own multi-site features table, to simulate cohorts like it.

Per feature, a marginal shape (``log`` for a positive feature whose log is less skewed, else ``normal``);
on that scale a least-squares fit of per-site intercepts and the covariates' effects (numeric covariates
linear, others one level indicator each); from the residuals, a pooled noise SD, each site's noise scale
(multiplicative effect) and each site's correlation between features, shrunk towards the pooled one. The
sites' intercepts minus their subject-weighted mean are the additive effects. Subjects of a simulated site
resample that site's covariate rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harmony.harmonize.benchmark.cohorts import SITE, CohortModel, design_matrix

__all__ = ["MAX_FEATURES", "MIN_SUBJECTS_PER_SITE", "fit_cohort_model"]

#: Fewest subjects a site needs for its scale and correlation to be estimated.
MIN_SUBJECTS_PER_SITE = 5
#: Most features a fitted model keeps (evenly spaced over the sorted names), so the benchmark stays fast.
MAX_FEATURES = 40


def _marginal(x: np.ndarray) -> str:
    if np.min(x) <= 0:
        return "normal"
    return "log" if abs(stats.skew(np.log(x))) < abs(stats.skew(x)) - 0.25 else "normal"


def _nearest_correlation(C: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    values, vectors = np.linalg.eigh((C + C.T) / 2)
    C = (vectors * np.maximum(values, floor)) @ vectors.T
    d = np.sqrt(np.diag(C))
    return C / np.outer(d, d)


def fit_cohort_model(features: pd.DataFrame, site: pd.Series | np.ndarray, covariates: pd.DataFrame | None = None,
                     *, max_features: int = MAX_FEATURES) -> CohortModel:
    """Fit a :class:`~harmony.harmonize.benchmark.cohorts.CohortModel` to a wide features table.

    Parameters
    ----------
    features : DataFrame of shape (n_subjects, n_features)
        Numeric features, one row per subject; constant and non-finite columns are dropped.
    site : array-like of shape (n_subjects,)
        Each subject's site.
    covariates : DataFrame, optional
        Each subject's covariates (rows aligned with ``features``), without missing values.
    max_features : int, default :data:`MAX_FEATURES`
        Keep at most this many features.

    Returns
    -------
    CohortModel
        One batch variable (``site``) with the user's sites and their effects, and the covariates' effects.

    Raises
    ------
    ValueError
        Fewer than 2 sites, a site with fewer than :data:`MIN_SUBJECTS_PER_SITE` subjects, rows that do not
        align, a missing covariate value, or no usable feature.

    Examples
    --------
    >>> from harmony.harmonize.benchmark.cohorts import Scenario, scenario_model, simulate_cohort
    >>> rng = np.random.default_rng(0)
    >>> truth = scenario_model(Scenario("demo", n_features=5), rng)
    >>> cohort = simulate_cohort(truth, 60, rng)
    >>> model = fit_cohort_model(pd.DataFrame(cohort.X), cohort.site, cohort.covariates)
    >>> centred = truth.shift["site"] - truth.shift["site"].mean(axis=0)
    >>> model.batches["site"], bool(np.abs(model.shift["site"] - centred).max() < 0.5)
    (['site1', 'site2', 'site3'], True)
    """
    site = np.asarray(site).astype(str)
    covariates = pd.DataFrame(index=range(len(features))) if covariates is None else covariates.reset_index(drop=True)
    if len(site) != len(features) or len(covariates) != len(features):
        raise ValueError(f"features ({len(features)} rows), site ({len(site)}) and covariates ({len(covariates)}) "
                         "must have one row per subject")
    missing = covariates.columns[covariates.isna().any()].tolist()
    if missing:
        raise ValueError(f"covariates {missing} have missing values")
    sites, counts = np.unique(site, return_counts=True)
    if len(sites) < 2 or counts.min() < MIN_SUBJECTS_PER_SITE:
        raise ValueError(f"a model of sites needs >= 2 sites of >= {MIN_SUBJECTS_PER_SITE} subjects each, got "
                         f"{dict(zip(sites.tolist(), counts.tolist()))}")
    values = features.apply(pd.to_numeric, errors="coerce")
    usable = [c for c in values.columns if values[c].notna().all() and np.isfinite(values[c]).all()
              and values[c].nunique() > 1]
    if not usable:
        raise ValueError("no numeric, finite, non-constant feature to model")
    usable = sorted(usable, key=str)
    if len(usable) > max_features:
        usable = [usable[i] for i in np.linspace(0, len(usable) - 1, max_features).round().astype(int)]
    X = values[usable].to_numpy(float)
    marginal = [_marginal(X[:, j]) for j in range(X.shape[1])]
    Y = np.where(np.array(marginal) == "log", np.log(np.where(X > 0, X, 1.0)), X)
    terms = []
    for column in covariates.columns:
        data = covariates[column]
        if pd.api.types.is_numeric_dtype(data) and not pd.api.types.is_bool_dtype(data):
            terms.append({"column": column, "kind": "linear", "center": float(data.mean()),
                          "scale": float(data.std()) or 1.0})
        else:
            terms.append({"column": column, "kind": "level", "levels": sorted(data.astype(str).unique().tolist())})
    design = design_matrix(terms, covariates)
    onehot = (site[:, None] == sites[None, :]).astype(float)
    coef_all, *_ = np.linalg.lstsq(np.column_stack([onehot, design]), Y, rcond=None)
    intercepts, coef = coef_all[:len(sites)], coef_all[len(sites):]
    mean = counts @ intercepts / counts.sum()
    residual = Y - np.column_stack([onehot, design]) @ coef_all
    sd = residual.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    standard = residual / sd
    pooled = _nearest_correlation(np.corrcoef(standard, rowvar=False).reshape(Y.shape[1], Y.shape[1]))
    log_scale, chol = np.empty((len(sites), Y.shape[1])), np.empty((len(sites), Y.shape[1], Y.shape[1]))
    for k, name in enumerate(sites):
        rows = standard[site == name]
        scale = rows.std(axis=0)
        log_scale[k] = np.log(np.where(scale > 0, scale, 1.0))
        weight = min(1.0, Y.shape[1] / len(rows))  # shrink a small site's correlation towards the pooled one
        own = np.nan_to_num(np.corrcoef(rows, rowvar=False).reshape(Y.shape[1], Y.shape[1]))
        chol[k] = np.linalg.cholesky(_nearest_correlation((1 - weight) * own + weight * pooled))
    return CohortModel(features=[str(c) for c in usable], mean=mean, sd=sd, marginal=marginal,
                       batches={SITE: sites.tolist()}, shift={SITE: intercepts - mean}, log_scale={SITE: log_scale},
                       chol=chol, chol_pooled=np.linalg.cholesky(pooled), terms=terms, coef=coef,
                       covariate_rows={name: covariates[site == name].reset_index(drop=True) for name in sites})
