"""Scores of one harmonized split against its known truth: pure functions of arrays.

Site effect left: balanced accuracy of a cross-validated linear site classifier, above chance (1/k) or above the
same classifier's accuracy on the clean values where the biology differs by site, and the fractions of
features whose sites differ by Kruskal-Wallis (location) and k-sample Anderson-Darling (distribution) at
alpha; the site-specific correlation between features left (:func:`covariance_left`). Biology kept: the
rank correlation of each feature with its clean value (the same subject without a scanner), the bias of the
covariate-effect estimates against those of the clean data, the group difference's effect size kept.
Plausibility: the fraction of values outside the feature's natural range.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = [
    "ALPHA",
    "balanced_site_accuracy",
    "covariance_left",
    "effect_bias",
    "group_effect_kept",
    "out_of_range_fraction",
    "score_split",
    "site_test_fractions",
    "truth_correlation",
]

#: Significance level of the per-feature site tests.
ALPHA = 0.05


def _standardise(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _lda_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, shrinkage: float) -> np.ndarray:
    """Linear discriminant analysis with a shrunk pooled covariance (equal priors), closed form."""
    sites = np.unique(labels)
    means = np.stack([train[labels == s].mean(axis=0) for s in sites])
    residual = train - means[np.searchsorted(sites, labels)]
    cov = residual.T @ residual / max(len(train) - len(sites), 1)
    cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-9 * np.eye(len(cov))
    w = np.linalg.solve(cov, means.T)
    scores = test @ w - 0.5 * np.sum(means.T * w, axis=0)
    return sites[np.argmax(scores, axis=1)]


def balanced_site_accuracy(X: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0,
                           shrinkage: float = 0.2) -> tuple[float, float]:
    """Cross-validated balanced accuracy of a linear-discriminant site classifier, and chance 1/k.

    The classifier is LDA with equal priors and a pooled covariance shrunk towards its diagonal, fitted on
    standardised features in stratified folds; balanced accuracy is the mean per-site recall of the pooled
    out-of-fold predictions.

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Features (standardised here).
    labels : ndarray of shape (n,)
        Site of each subject.
    folds : int, default 5
        Stratified folds (fewer when a site has fewer subjects).
    seed : int, default 0
        Seed of the fold split.
    shrinkage : float, default 0.2
        Weight of the diagonal in the pooled covariance.

    Returns
    -------
    (float, float)
        The accuracy (NaN when a site has fewer than 2 subjects, there is one site or a value is not finite)
        and 1/k.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(["a", "b"], 30)
    >>> X = rng.normal(size=(60, 3)) + 3 * (labels == "b")[:, None]
    >>> balanced_site_accuracy(X, labels)
    (1.0, 0.5)
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels).astype(str)
    sites, counts = np.unique(labels, return_counts=True)
    chance = 1.0 / len(sites)
    if len(sites) < 2 or counts.min() < 2 or not np.all(np.isfinite(X)):
        return float("nan"), chance
    Z = _standardise(X)
    predicted = np.empty_like(labels)
    split = StratifiedKFold(n_splits=int(min(folds, counts.min())), shuffle=True, random_state=seed)
    for fit, held in split.split(Z, labels):
        predicted[held] = _lda_predict(Z[fit], labels[fit], Z[held], shrinkage)
    return float(np.mean([np.mean(predicted[labels == s] == s) for s in sites])), chance


def site_test_fractions(X: np.ndarray, labels: np.ndarray, *, alpha: float = ALPHA) -> tuple[float, float]:
    """Fractions of features whose sites differ: Kruskal-Wallis and k-sample Anderson-Darling, p < alpha.

    Parameters
    ----------
    X : ndarray of shape (n, p)
    labels : ndarray of shape (n,)
    alpha : float, default 0.05

    Returns
    -------
    (float, float)
        Kruskal-Wallis fraction, Anderson-Darling fraction (NaN for one site).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(["a", "b"], 40)
    >>> site_test_fractions(rng.normal(size=(80, 4)) + 2 * (labels == "a")[:, None], labels)
    (1.0, 1.0)
    """
    groups = [X[labels == s] for s in np.unique(labels)]
    if len(groups) < 2:
        return float("nan"), float("nan")
    kw, ad = [], []
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # AD caps its p-value into [0.001, 0.25], saying so
        warnings.simplefilter("ignore")
        for j in range(X.shape[1]):
            columns = [g[:, j] for g in groups]
            if np.ptp(X[:, j]) == 0:
                kw.append(False)
                ad.append(False)
                continue
            kw.append(stats.kruskal(*columns).pvalue < alpha)
            ad.append(stats.anderson_ksamp(columns).pvalue < alpha)
    return float(np.mean(kw)), float(np.mean(ad))


def _ranks(X: np.ndarray) -> np.ndarray:
    return stats.rankdata(X, axis=0)


def truth_correlation(X: np.ndarray, clean: np.ndarray) -> float:
    """Mean over features of the Spearman correlation between harmonized and clean values.

    Parameters
    ----------
    X, clean : ndarray of shape (n, p)

    Returns
    -------
    float
        In [-1, 1]; a constant feature counts 0.

    Examples
    --------
    >>> clean = np.arange(10.0)[:, None]
    >>> truth_correlation(np.exp(clean), clean)
    1.0
    """
    a, b = _standardise(_ranks(X)), _standardise(_ranks(clean))
    return float(np.mean((a * b).mean(axis=0)))


def _effects(X: np.ndarray, design: np.ndarray) -> np.ndarray:
    D = np.column_stack([np.ones(len(X)), design])
    coef, *_ = np.linalg.lstsq(D, X, rcond=None)
    return coef[1:]


def effect_bias(X: np.ndarray, clean: np.ndarray, design: np.ndarray) -> float:
    """Mean absolute difference between the covariate effects estimated on harmonized and on clean data.

    Both are least-squares coefficients of the true design; the difference is in SDs of the clean feature.

    Parameters
    ----------
    X, clean : ndarray of shape (n, p)
    design : ndarray of shape (n, d)
        The true design (no intercept).

    Returns
    -------
    float
        NaN without design columns or with fewer subjects than design columns + 2.

    Examples
    --------
    >>> design = np.linspace(-1, 1, 20)[:, None]
    >>> clean = 2 * design + np.cos(np.arange(20.0))[:, None]
    >>> round(effect_bias(clean + 1.0, clean, design), 12), round(effect_bias(clean * 2, clean, design), 3)
    (0.0, 1.418)
    """
    if design.shape[1] == 0 or len(X) < design.shape[1] + 2:
        return float("nan")
    sd = clean.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return float(np.mean(np.abs(_effects(X, design) - _effects(clean, design)) / sd))


def _cohen_d(X: np.ndarray, group: np.ndarray) -> np.ndarray:
    a, b = X[group], X[~group]
    pooled = np.sqrt(((len(a) - 1) * a.var(axis=0, ddof=1) + (len(b) - 1) * b.var(axis=0, ddof=1))
                     / (len(a) + len(b) - 2))
    return (a.mean(axis=0) - b.mean(axis=0)) / np.where(pooled > 0, pooled, np.inf)


def group_effect_kept(X: np.ndarray, clean: np.ndarray, group: np.ndarray, *, min_effect: float = 0.2) -> float:
    """Median ratio of the group difference's Cohen's d after harmonization to its clean value.

    Parameters
    ----------
    X, clean : ndarray of shape (n, p)
    group : ndarray of bool, shape (n,)
        True for the patients.
    min_effect : float, default 0.2
        Only features whose clean |d| reaches this count.

    Returns
    -------
    float
        1 when the effect size is kept; NaN without such features or with fewer than 2 subjects a group.

    Examples
    --------
    >>> group = np.arange(40) % 2 == 0
    >>> clean = group[:, None] + np.sin(np.arange(40.0))[:, None]
    >>> group_effect_kept(clean * 3 + 1, clean, group)
    1.0
    """
    if group.sum() < 2 or (~group).sum() < 2:
        return float("nan")
    d_clean, d = _cohen_d(clean, group), _cohen_d(X, group)
    keep = np.abs(d_clean) >= min_effect
    return float(np.median(d[keep] / d_clean[keep])) if keep.any() else float("nan")


def out_of_range_fraction(X: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of values outside each feature's natural range [lower, upper] (non-finite values count).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    lower, upper : ndarray of shape (p,)

    Returns
    -------
    float

    Examples
    --------
    >>> out_of_range_fraction(np.array([[-1.0], [1.0]]), np.array([0.0]), np.array([np.inf]))
    0.5
    """
    with np.errstate(invalid="ignore"):
        return float(np.mean(~((X >= lower) & (X <= upper))))


def covariance_left(X: np.ndarray, labels: np.ndarray) -> float:
    """Site-specific correlation left: mean over sites of ``||R_site - R_pooled||_F / p``.

    ``R`` is the Spearman correlation matrix of the features (of the site's subjects, or of all).

    Parameters
    ----------
    X : ndarray of shape (n, p)
    labels : ndarray of shape (n,)

    Returns
    -------
    float
        NaN when a site has fewer than 4 subjects.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3))
    >>> covariance_left(X, np.repeat(["a", "b"], 200)) < 0.1
    True
    """
    sites = np.unique(labels)
    if min((labels == s).sum() for s in sites) < 4:
        return float("nan")
    R = _ranks(X)

    def corr(rows):
        with np.errstate(all="ignore"):
            return np.nan_to_num(np.corrcoef(rows, rowvar=False))

    pooled = corr(R)
    p = X.shape[1]
    return float(np.mean([np.linalg.norm(corr(R[labels == s]) - pooled) / p for s in sites]))


def score_split(X: np.ndarray, clean: np.ndarray, labels: np.ndarray, design: np.ndarray, group: np.ndarray | None,
                lower: np.ndarray, upper: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Every score of one split, by metric name.

    Parameters
    ----------
    X, clean : ndarray of shape (n, p)
        Harmonized and clean features.
    labels : ndarray of shape (n,)
        True batch of each subject (hidden batch included).
    design : ndarray of shape (n, d)
        True covariate design.
    group : ndarray of bool or None
        Patients, when the cohort has groups.
    lower, upper : ndarray of shape (p,)
        Natural range of each feature.
    seed : int, default 0
        Seed of the classifier's folds.

    Returns
    -------
    dict of str to float
        ``site_accuracy``, ``chance``, ``clean_site_accuracy`` (the same classifier on the clean values: above
        chance when the biology differs by site), ``site_accuracy_excess`` (accuracy minus the larger of chance
        and the clean accuracy: the site effect beyond the biology's own; negative when biology was removed),
        ``kw_fraction``, ``ad_fraction``, ``covariance_left``, ``truth_correlation``, ``effect_bias``,
        ``group_effect_kept``, ``out_of_range``.
    """
    accuracy, chance = balanced_site_accuracy(X, labels, seed=seed)
    clean_accuracy = balanced_site_accuracy(clean, labels, seed=seed)[0]
    finite = np.where(np.isfinite(X), X, np.nan)
    kw, ad = site_test_fractions(np.nan_to_num(finite), labels)
    safe = np.nan_to_num(finite)
    # where the biology differs by site, the scanner-free subjects' own accuracy is the floor, not 1/k: a method
    # that goes below it removed biology
    return {"site_accuracy": accuracy, "chance": chance,
            "site_accuracy_excess": accuracy - float(np.fmax(chance, clean_accuracy)),
            "clean_site_accuracy": clean_accuracy,
            "kw_fraction": kw, "ad_fraction": ad, "covariance_left": covariance_left(safe, labels),
            "truth_correlation": truth_correlation(safe, clean), "effect_bias": effect_bias(safe, clean, design),
            "group_effect_kept": group_effect_kept(safe, clean, group) if group is not None else float("nan"),
            "out_of_range": out_of_range_fraction(X, lower, upper)}
