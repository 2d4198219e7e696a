"""ComBat harmonization: a scikit-learn estimator fitted on one set of subjects and applied to new ones.

The algorithm is ComBat (Johnson, Li and Rabinovic 2007) as implemented by R ``sva`` and neuroCombat
(Fortin et al. 2017/2018), reproduced to rounding:

1. Regress every feature on the design ``[batch one-hot, covariates]`` (ordinary least squares). The
   grand mean is the sample-size-weighted mean of the batch coefficients (or, with ``ref_batch``, the
   reference batch's coefficient); the pooled variance is the mean squared residual over all samples
   (with ``ref_batch``, over the reference batch only, divided by its size).
2. Standardise: ``s = (x - grand_mean - covariates @ coef) / sqrt(var_pooled)``.
3. Per batch, location ``gamma_hat`` (the batch mean of ``s``; with ``ref_batch`` the difference to the
   reference batch) and scale ``delta_hat`` (the batch variance of ``s``, ddof 1; 1 when ``mean_only``).
4. Empirical Bayes shrinks them towards priors estimated over all features: parametric (normal prior on
   gamma, inverse-gamma prior on delta, solved by fixed-point iteration until the largest relative change
   ``|new - old| / old`` of a batch falls to 1e-4, exactly as R does, sign of ``old`` included; with
   ``mean_only`` the closed form with n = 1, as R does) or non-parametric (each feature's estimate is the
   likelihood-weighted mean of the other features' estimates, computed here in log space, so it does not
   underflow for large batches where neuroCombat returns NaN). Without EB the raw estimates are used.
5. Adjust: ``x* = (s - gamma*) / sqrt(delta*) * sqrt(var_pooled) + grand_mean + covariates @ coef``.

:meth:`ComBat.transform` applies step 5 (with step 2) to any samples from batches seen in fit, using *their*
covariates with the fitted coefficients, so new subjects keep their own biological effects. Where it
departs from neuroCombat 0.2.12, on purpose:

- features that are constant in the training data are returned unchanged (neuroCombat replaces their zero
  pooled variance by ``median(var != 0)``, a boolean, and alters them);
- a feature constant within one batch (but not overall) has a zero within-batch variance, replaced by 1
  before the priors exactly as R and neuroCombat do; its values stay constant within that batch after
  harmonization, moved to the location of the other batches. The zero is detected on the input values,
  so rounding in the standardisation cannot turn it into a tiny variance that would blow the batch up;
- ``ref_batch`` works on numpy 2 and the reference batch's rows are returned bit-for-bit unchanged;
- continuous covariates stay float64 (neuroCombat casts them, and data frames, to float32);
- the transform uses the new subjects' covariates (``neuroCombatFromTraining`` ignores them).

The work is done on the rows grouped by batch, in float64, with a few passes over the data: the least
squares of step 1 centres the covariates within each batch (the batch intercepts are then batch means, and
only the covariates need a solve), steps 2 and 3 follow from the residuals' per-batch sums and sums of
squares, and step 5 scales each batch's rows in place and adds the location terms with one BLAS update.
Degenerate statistics (a feature constant within a batch, an empirical Bayes prior without spread) and
small batches (``min_batch_size``) are reported once each as a
:class:`~harmony.harmonize.inputs.HarmonizationWarning`, as are features never negative in fit that come
out negative.

Batch labels and categorical covariate levels are compared as text (``1`` and ``"1"`` are one batch).
Numeric covariate columns are continuous; text, categorical and boolean columns are categorical
(one-hot, first level in sorted order dropped).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from harmony.core.files import read_json, write_json
from harmony.core.version import __version__
from harmony.harmonize.covariates import (
    Covariate,
    _check_rank,
    covariate_matrix,
    fit_covariates,
)
from harmony.harmonize.inputs import (
    Degenerate,
    HarmonizationError,
    HarmonizationWarning,
    _as_batch,
    _as_matrix,
    _labels,
    _sample,
)
from harmony.harmonize.settings import TRANSFORMS
from harmony.harmonize.transforms import make_transform, transform_from_dict

__all__ = ["MODEL_FORMAT", "MODEL_FORMAT_VERSION", "EB_CONVERGENCE", "EB_MAX_ITER", "MIN_BATCH_SIZE", "ComBat"]

logger = logging.getLogger(__name__)


#: ``format`` and ``format_version`` written into every saved model; load refuses other formats and newer versions.
MODEL_FORMAT = "harmony.combat"
#: 2: ``params`` holds ``feature_transform``; version 1 called it ``transform`` (still read).
MODEL_FORMAT_VERSION = 2
#: Parameters renamed after a format version: ``{last version with the old names: {old name: new name}}``.
_RENAMED_PARAMS = {1: {"transform": "feature_transform"}}
#: Convergence threshold and iteration cap of the parametric empirical Bayes iteration (R sva uses 1e-4).
EB_CONVERGENCE = 1e-4
#: Iteration cap of the parametric empirical Bayes iteration (a HarmonizationWarning says when it is reached).
EB_MAX_ITER = 10_000
#: Default ``min_batch_size``: fitting a smaller batch warns (its estimates are noisy).
MIN_BATCH_SIZE = 10
#: Number of feature pairs the non-parametric prior evaluates at once (bounds memory for many features).
_NONPARAMETRIC_CHUNK = 2**22


# -- the algorithm ----------------------------------------------------------------------------------

def _parametric_eb(gamma_hat, delta_hat, means, ss, counts, mean_only):
    """Parametric empirical Bayes estimates, iterated for all batches and features at once."""
    gamma_bar = gamma_hat.mean(axis=1, keepdims=True)
    t2 = gamma_hat.var(axis=1, ddof=1, keepdims=True)
    if mean_only:
        return (t2 * gamma_hat + gamma_bar) / (t2 + 1), np.ones_like(delta_hat), np.zeros(len(counts), int)
    m, s2 = delta_hat.mean(axis=1, keepdims=True), delta_hat.var(axis=1, ddof=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # s2 = 0: no spread to shrink with (see _fit_combat)
        a, b = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
    n = counts[:, None].astype(float)
    g_old, d_old = gamma_hat.copy(), delta_hat.copy()
    n_iter = np.zeros(len(counts), int)
    active = np.arange(len(counts))
    while active.size:
        r = active
        with np.errstate(divide="ignore", invalid="ignore"):
            g_new = (t2[r] * n[r] * gamma_hat[r] + d_old[r] * gamma_bar[r]) / (t2[r] * n[r] + d_old[r])
            sum2 = ss[r] + n[r] * (means[r] - g_new) ** 2  # = sum over the batch of (s - g_new)^2
            d_new = (0.5 * sum2 + b[r]) / (n[r] / 2 + a[r] - 1)
            change = np.max(np.hstack([np.abs(g_new - g_old[r]) / g_old[r], np.abs(d_new - d_old[r]) / d_old[r]]),
                            axis=1)
        g_old[r], d_old[r] = g_new, d_new
        n_iter[r] += 1
        active = r[change > EB_CONVERGENCE]
        if active.size and n_iter[active[0]] >= EB_MAX_ITER:
            warnings.warn(f"ComBat: parametric empirical Bayes did not converge in {EB_MAX_ITER} iterations for "
                          f"{active.size} batch(es)", HarmonizationWarning, stacklevel=4)
            break
    return g_old, d_old, n_iter


def _nonparametric_eb(gamma_hat, delta_hat, means, ss, counts):
    """Non-parametric empirical Bayes: for each feature, the other features' estimates weighted by likelihood."""
    n_batch, n_feat = gamma_hat.shape
    gamma_star, delta_star = np.empty_like(gamma_hat), np.empty_like(delta_hat)
    rows = max(1, _NONPARAMETRIC_CHUNK // n_feat)
    for k in range(n_batch):
        g, d, n = gamma_hat[k], delta_hat[k], counts[k]
        for start in range(0, n_feat, rows):
            i = np.arange(start, min(start + rows, n_feat))
            sum2 = ss[k, i, None] + n * (means[k, i, None] - g[None, :]) ** 2
            loglik = -0.5 * n * np.log(2 * np.pi * d)[None, :] - sum2 / (2 * d[None, :])
            loglik[np.arange(i.size), i] = -np.inf  # leave the feature itself out
            w = np.exp(loglik - loglik.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            gamma_star[k, i], delta_star[k, i] = w @ g, w @ d
    return gamma_star, delta_star


@dataclass
class _Fit:
    grand_mean: np.ndarray
    var_pooled: np.ndarray
    coef: np.ndarray
    gamma_hat: np.ndarray
    delta_hat: np.ndarray
    gamma_star: np.ndarray
    delta_star: np.ndarray
    n_iter: np.ndarray


def _batch_order(batch_idx: np.ndarray, n_batch: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The row order that groups the batches (None when they already are) and each batch's first row in it."""
    starts = np.searchsorted(np.sort(batch_idx) if batch_idx.size else batch_idx, np.arange(n_batch))
    if batch_idx.size < 2 or (np.diff(batch_idx) >= 0).all():
        return None, starts
    return np.argsort(batch_idx, kind="stable"), starts


def _slices(starts: np.ndarray, n: int) -> list[slice]:
    return [slice(int(s), int(e)) for s, e in zip(starts, [*starts[1:], n])]


def _fit_combat(Zs, starts, counts, covs, ref, *, parametric, eb, mean_only, const_in_batch, scale,
                labels: Sequence[str], batches: Sequence[str], solve=None, found: Degenerate | None = None) -> _Fit:
    """The ComBat estimates from ``Zs`` (rows grouped by batch, from ``starts``; overwritten with residuals).

    The standardised data are never formed: the per-batch mean and sum of squares of the standardised
    values follow from those of the least-squares residuals, which have no other use.
    """
    n, n_feat = Zs.shape
    n_batch = len(counts)
    blocks = _slices(starts, n)
    # least squares on [batch one-hot, covariates]: with the covariates centred within each batch the two
    # blocks are orthogonal, so the batch intercepts are batch means and only the covariates need a solve
    zbar = np.array([Zs[b].sum(axis=0) for b in blocks]) / counts[:, None]
    covbar = np.array([covs[b].mean(axis=0) for b in blocks]).reshape(n_batch, covs.shape[1])
    centred = covs - np.repeat(covbar, counts, axis=0)
    if solve is not None:  # hook for ComBatGAM (gam.py): penalised coefficients, solved on the full design
        coef = solve(np.hstack([np.repeat(np.eye(n_batch), counts, axis=0), covs]), Zs)[n_batch:]
    elif covs.shape[1]:
        q, r = np.linalg.qr(centred)
        coef = linalg.solve_triangular(r, q.T @ Zs)
    else:
        coef = np.zeros((0, n_feat))
    intercept = zbar - covbar @ coef  # the batch coefficients of the one-hot design
    grand_mean = intercept[ref] if ref is not None else (counts / n) @ intercept
    for k, rows in enumerate(blocks):  # residuals, in place
        Zs[rows] -= zbar[k]
    resid = _gemm_update(Zs, centred, coef, alpha=-1.0)
    rsum = np.array([resid[b].sum(axis=0) for b in blocks])
    rss = np.array([np.einsum("ij,ij->j", resid[b], resid[b]) for b in blocks])
    var_pooled = rss[ref] / counts[ref] if ref is not None else rss.sum(axis=0) / n
    degenerate = var_pooled <= 1e-20 * scale**2
    if degenerate.any():
        j = int(np.flatnonzero(degenerate)[0])
        where = f"in reference batch {batches[ref]!r}" if ref is not None else "overall"
        raise HarmonizationError(f"feature {labels[j]!r} has no residual variance {where} after the batch "
                                 "and covariate effects (it is constant there, or exactly explained by them); "
                                 "ComBat cannot standardise it")
    sd = np.sqrt(var_pooled)
    rbar = rsum / counts[:, None]
    means = (rbar + intercept - grand_mean) / sd  # batch means of the standardised data
    ss = (rss - counts[:, None] * rbar**2) / var_pooled  # their sums of squares about those means
    gamma_hat = means.copy()
    if ref is not None:
        gamma_hat[np.arange(n_batch) != ref] -= means[ref]
    if mean_only:
        delta_hat = np.ones_like(means)
    else:
        delta_hat = ss / (counts[:, None] - 1)
        zero = const_in_batch | (delta_hat == 0)
        delta_hat[zero] = 1.0  # as R and neuroCombat: a zero variance becomes 1
        if found is not None:
            for k, j in zip(*np.nonzero(zero)):
                found.add("feature constant within the batch (zero variance): its scale is taken as 1 and it stays "
                          "constant there", labels[j], batches[k])

    n_iter = np.zeros(n_batch, int)
    gamma_star, delta_star = gamma_hat.copy(), delta_hat.copy()
    # the reference batch is left as it is: its estimates are not shrunk (with var_pooled taken from it alone,
    # its delta_hat is n / (n - 1) for every feature, a prior without spread)
    shrunk = np.arange(n_batch) != ref
    if eb and parametric:
        gamma_star[shrunk], delta_star[shrunk], n_iter[shrunk] = _parametric_eb(
            gamma_hat[shrunk], delta_hat[shrunk], means[shrunk], ss[shrunk], counts[shrunk], mean_only)
    elif eb:
        gamma_star[shrunk], delta_star[shrunk] = _nonparametric_eb(gamma_hat[shrunk], delta_hat[shrunk],
                                                                   means[shrunk], ss[shrunk], counts[shrunk])
    bad = ~(np.isfinite(gamma_star).all(axis=1) & np.isfinite(delta_star).all(axis=1))
    for k in np.flatnonzero(bad & shrunk):  # e.g. every feature's variance equal in the batch: a prior without spread
        gamma_star[k], delta_star[k] = gamma_hat[k], delta_hat[k]
        if found is not None:
            found.add("empirical Bayes prior without spread over the features (the estimates are all equal): the "
                      "batch's raw estimates are used, not shrunk", None, batches[k])
    if ref is not None:
        gamma_star[ref], delta_star[ref] = 0.0, 1.0
    return _Fit(grand_mean, var_pooled, coef, gamma_hat, delta_hat, gamma_star, delta_star, n_iter)


def _gemm_update(C: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``C += alpha * A @ B`` for a C-contiguous float64 ``C``, in place (one BLAS call, no temporary)."""
    if C.size and A.shape[1]:
        # C.T is Fortran-contiguous, the layout BLAS updates in place
        out = linalg.blas.dgemm(alpha, np.asfortranarray(B.T), np.asfortranarray(A.T), beta=1.0, c=C.T,
                                overwrite_c=True)
        if not np.shares_memory(out, C):
            C[...] = out.T
    return C


# -- the estimator ----------------------------------------------------------------------------------

def _require_batch(method: str, batch: Any, y: Any = None) -> None:
    """Raise when ``batch`` was not given, saying how to give it (and that ``y`` is not it)."""
    if batch is not None:
        return
    message = f"ComBat.{method} needs batch= (one batch label per sample, e.g. batch=cases['site'])"
    if y is not None:
        message += ("; the y given is NOT used as the batch. In a Pipeline or cross-validation, route the batch as "
                    "metadata: sklearn.set_config(enable_metadata_routing=True), then pass "
                    "params={'batch': batch, 'covariates': covariates} to cross_val_score (or batch=..., "
                    "covariates=... to Pipeline.fit)")
    raise HarmonizationError(message)


class ComBat(TransformerMixin, BaseEstimator):
    """ComBat harmonization with the scikit-learn estimator contract.

    ``batch`` (and ``covariates``) are per-sample metadata, keyword-only in :meth:`fit`, :meth:`transform`
    and :meth:`fit_transform`; ``y`` is accepted and ignored. Both are requested by default for ``fit``
    and ``transform``, so with scikit-learn's metadata routing enabled a
    :class:`~sklearn.pipeline.Pipeline` step receives them, split per fold by cross-validation (by
    position: give them in X's row order).

    Parameters
    ----------
    parametric : bool, default=True
        Parametric (True) or non-parametric empirical Bayes priors.
    eb : bool, default=True
        Shrink the per-batch estimates with empirical Bayes; False uses the raw per-batch estimates.
    mean_only : bool, default=False
        Adjust the batch locations only, not their scales.
    ref_batch : str, optional
        A batch whose data are left unchanged; the others are mapped onto it.
    feature_transform : {None, "log", "yeo-johnson", "quantile-normal", "auto"}, default=None
        Per-feature transform fitted in ``fit``, applied before ComBat and inverted after it
        (see :mod:`harmony.harmonize.transforms`). The ``[harmonization] transform`` setting and the
        ``--transform`` option of ``harmony harmonize``.
    min_batch_size : int, default 10
        Fitting a batch with fewer samples warns (:class:`~harmony.harmonize.inputs.HarmonizationWarning`),
        naming it and its count; a batch of one is an error unless ``mean_only``.

    Attributes
    ----------
    batches_ : list of str
        Batch labels seen in fit, sorted.
    batch_counts_ : ndarray of shape (n_batches,)
        Training samples per batch.
    ref_level_ : int or None
        Index of ``ref_batch`` in ``batches_``.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of str of shape (n_features_in_,)
        Feature names seen in fit; only when fitted on a DataFrame.
    constant_ : ndarray of bool of shape (n_features_in_,)
        Features constant in the training data; they pass through unchanged.
    training_min_ : ndarray of shape (n_features_in_,)
        Each feature's training minimum: a feature never negative in fit that comes out negative in
        :meth:`transform` is counted and named in a :class:`~harmony.harmonize.inputs.HarmonizationWarning`.
    covariates_ : list of Covariate
        Covariate encodings (categorical levels learned in fit).
    transform_ : fitted transform
        The fitted ``feature_transform`` (the identity when it is None).
    grand_mean_, var_pooled_ : ndarray of shape (n_varying,)
        Grand mean and pooled variance of the varying (not constant) features.
    covariate_coef_ : ndarray of shape (n_covariate_terms, n_varying)
        Covariate effects on the varying features.
    gamma_hat_, delta_hat_, gamma_star_, delta_star_ : ndarray of shape (n_batches, n_varying)
        Per-batch location and scale, raw and after empirical Bayes.
    n_iter_ : ndarray of shape (n_batches,)
        Parametric EB iterations per batch (0 when not iterated).

    See Also
    --------
    harmony.harmonize.harmonize_features : ComBat on a long features table.
    harmony.harmonize.site_classifier_accuracy : cross-validated site effect, ComBat fitted in each fold.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> batch = np.repeat(["a", "b"], 20)
    >>> X = rng.normal(size=(40, 5)) + np.where(batch == "b", 3.0, 0.0)[:, None]
    >>> Y = ComBat().fit_transform(X, batch=batch)
    >>> bool(abs(Y[batch == "b"].mean() - Y[batch == "a"].mean()) < 0.2)
    True
    >>> ComBat().fit(X, batch=batch).transform(X[:2], batch=["c", "a"])
    Traceback (most recent call last):
    ...
    harmony.harmonize.inputs.HarmonizationError: batch 'c' (sample row 0) was not seen in fit (batches: ['a', 'b'])

    In a Pipeline, with metadata routing, each training fold fits its own ComBat and the held-out fold is
    harmonized with it:

    >>> import sklearn
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> y = rng.integers(0, 2, 40)
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     scores = cross_val_score(make_pipeline(ComBat(), StandardScaler(), LogisticRegression()), X, y,
    ...                              cv=4, params={"batch": batch})
    >>> scores.shape
    (4,)
    """

    # batch and covariates are per-sample metadata every fit and transform needs: requested by default
    __metadata_request__fit = {"batch": True, "covariates": True}
    __metadata_request__transform = {"batch": True, "covariates": True}

    def __init__(self, parametric: bool = True, eb: bool = True, mean_only: bool = False,
                 ref_batch: str | None = None, feature_transform: str | None = None,
                 min_batch_size: int = MIN_BATCH_SIZE):
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.feature_transform = feature_transform
        self.min_batch_size = min_batch_size

    # -- hooks for the ComBat family: ComBatGAM (gam.py) adds spline columns to the design and a penalised solve.
    # Keep them when optimising fit/transform: _fit_design/_design give the covariate part of the design,
    # _solve(design, Z) -> coefficients replaces the least squares when not None.
    _solve = None

    def _fit_design(self, covariates: pd.DataFrame | None, n: int, samples: list | None) -> tuple[list, np.ndarray]:
        specs = fit_covariates(covariates)
        return specs, covariate_matrix(specs, covariates, n, samples)

    def _design(self, covariates: pd.DataFrame | None, n: int, samples: list | None) -> np.ndarray:
        return covariate_matrix(self.covariates_, covariates, n, samples)

    def _n_design_terms(self) -> int:
        return sum(len(c.terms) for c in self.covariates_)

    def _check_params(self) -> None:
        for name in ("parametric", "eb", "mean_only"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise HarmonizationError(f"ComBat: {name} must be true or false, got {getattr(self, name)!r}")
        if self.feature_transform is not None and self.feature_transform not in TRANSFORMS:
            raise HarmonizationError(f"ComBat: feature_transform must be None or one of {list(TRANSFORMS)}, "
                                     f"got {self.feature_transform!r}")
        size = getattr(self, "min_batch_size", MIN_BATCH_SIZE)  # a subclass may not declare it
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 2:
            raise HarmonizationError(f"ComBat: min_batch_size must be a whole number >= 2, got {size!r}")

    def fit(self, X: Any, y: Any = None, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> ComBat:
        """Learn the ComBat estimates from ``X``, its batches and covariates.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Finite feature values, one row per sample.
        y : None
            Ignored (accepted so that ComBat can be a Pipeline step); it is not the batch.
        batch : array-like of shape (n_samples,)
            Required: the batch (scanner, site) of each sample, compared as text.
        covariates : DataFrame of shape (n_samples, n_covariates), optional
            Biological covariates whose effects are preserved; numeric columns continuous, others
            categorical.

        Returns
        -------
        self : ComBat
        """
        _require_batch("fit", batch, y)
        self._check_params()
        values, names, samples = _as_matrix(X, copy=False)
        n, n_feat = values.shape
        labels = _as_batch(batch, n, samples)
        batches, batch_idx, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if len(batches) < 2:
            raise HarmonizationError(f"ComBat needs at least 2 batches, got {len(batches)} ({list(batches)})")
        ref = None
        if self.ref_batch is not None:
            if str(self.ref_batch) not in set(batches):
                raise HarmonizationError(f"ref_batch {str(self.ref_batch)!r} is not one of the batches {list(batches)}")
            ref = int(np.flatnonzero(batches == str(self.ref_batch))[0])
        if not self.mean_only and (counts < 2).any():
            one = batches[int(np.flatnonzero(counts < 2)[0])]
            raise HarmonizationError(f"batch {one!r} has a single sample: its variance cannot be estimated "
                                     "(use mean_only=True, or merge or drop the batch)")
        size = getattr(self, "min_batch_size", MIN_BATCH_SIZE)
        small = np.flatnonzero(counts < size)
        if small.size:
            listed = ", ".join(f"{batches[k]!r} ({counts[k]})" for k in small)
            warnings.warn(f"ComBat: {small.size} batch(es) with fewer than {size} subjects: {listed}; their location "
                          "and scale estimates are noisy and harmonized values may leave the features' range "
                          "(merge small batches, or use mean_only=True)", HarmonizationWarning, stacklevel=3)
        specs, cov = self._fit_design(covariates, n, samples)
        _check_rank(np.eye(len(batches))[batch_idx], specs, cov)

        order, starts = _batch_order(batch_idx, len(batches))
        grouped = values if order is None else values[order]
        blocks = _slices(starts, n)
        low = np.array([grouped[b].min(axis=0) for b in blocks])  # faster than np.minimum.reduceat
        high = np.array([grouped[b].max(axis=0) for b in blocks])
        constant = low.min(axis=0) == high.max(axis=0)
        if constant.any():
            logger.info("ComBat: %d feature(s) constant in training are passed through unchanged", int(constant.sum()))
        varying = ~constant
        if self.eb and varying.sum() < 2:
            raise HarmonizationError(f"empirical Bayes needs at least 2 features that vary, got {int(varying.sum())} "
                                     "(use eb=False)")
        vlabels = _labels(names, varying)
        grouped = grouped if varying.all() else grouped[:, varying]
        transform = make_transform(self.feature_transform).fit(grouped, vlabels, samples)
        Zs = transform.forward(grouped, vlabels, samples)
        if transform.name is None:
            scale = (high.max(axis=0) - low.min(axis=0))[varying]
        else:
            scale = np.ptp(Zs, axis=0)
        Zs = np.array(Zs, order="C", copy=np.shares_memory(Zs, values) or None)  # overwritten by the fit
        found = Degenerate("ComBat")
        est = _fit_combat(Zs, starts, counts, cov if order is None else cov[order], ref, parametric=self.parametric,
                          eb=self.eb, mean_only=self.mean_only, const_in_batch=(low == high)[:, varying],
                          scale=scale, labels=vlabels, batches=[str(b) for b in batches], solve=self._solve,
                          found=found)
        found.warn()

        self.batches_ = [str(b) for b in batches]
        self.batch_counts_ = counts
        self.ref_level_ = ref
        self.n_features_in_ = n_feat
        if names is not None:
            self.feature_names_in_ = np.array(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.constant_ = constant
        self.training_min_ = low.min(axis=0)
        self.covariates_ = specs
        self.transform_ = transform
        self.grand_mean_, self.var_pooled_, self.covariate_coef_ = est.grand_mean, est.var_pooled, est.coef
        self.gamma_hat_, self.delta_hat_ = est.gamma_hat, est.delta_hat
        self.gamma_star_, self.delta_star_, self.n_iter_ = est.gamma_star, est.delta_star, est.n_iter
        return self

    def _features_of(self, X: Any) -> tuple[np.ndarray, list | None, list | None, pd.Index | None]:
        """Values, feature names, sample labels of ``X`` in the fitted feature order, and its columns in that order."""
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            fitted = list(self.feature_names_in_)
            given = [str(c) for c in X.columns]
            missing = [f for f in fitted if f not in set(given)]
            extra = [f for f in given if f not in set(fitted)]
            if missing or extra:
                raise HarmonizationError(f"X does not have the features the model was fitted on: missing "
                                         f"{missing[:10]}{' ...' if len(missing) > 10 else ''} ({len(missing)}), "
                                         f"unexpected {extra[:10]}{' ...' if len(extra) > 10 else ''} ({len(extra)})")
            X = X.iloc[:, [given.index(f) for f in fitted]]
        values, names, samples = _as_matrix(X, copy=False)
        if values.shape[1] != self.n_features_in_:
            raise HarmonizationError(f"X has {values.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return values, names, samples, X.columns if isinstance(X, pd.DataFrame) else None

    def transform(self, X: Any, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> Any:
        """Harmonize samples from batches seen in fit, with their own covariates.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The features of fit (a DataFrame's columns are matched by name, in any order).
        batch : array-like of shape (n_samples,)
            Required: each sample's batch, one of ``batches_``.
        covariates : DataFrame of shape (n_samples, n_covariates), optional
            The covariates of fit (required when the model was fitted with covariates).

        Returns
        -------
        X_harmonized : ndarray or DataFrame of shape (n_samples, n_features)
            X's type, index and column order.
        """
        check_is_fitted(self)
        _require_batch("transform", batch)
        values, names, samples, columns = self._features_of(X)
        n = values.shape[0]
        labels = _as_batch(batch, n, samples)
        index = {b: k for k, b in enumerate(self.batches_)}
        unseen = [i for i, b in enumerate(labels) if b not in index]
        if unseen:
            raise HarmonizationError(f"batch {labels[unseen[0]]!r} (sample {_sample(samples, unseen[0])}) was not "
                                     f"seen in fit (batches: {self.batches_})")
        batch_idx = np.array([index[b] for b in labels], dtype=int)
        cov = self._design(covariates, n, samples)

        varying = ~self.constant_
        Z = self.transform_.forward(values if varying.all() else values[:, varying], _labels(names, varying), samples)
        order, starts = _batch_order(batch_idx, len(self.batches_))
        Zs = np.array(Z if order is None else Z[order], order="C", copy=np.shares_memory(Z, values) or None)
        design = np.hstack([cov, np.ones((n, 1))])
        design = design if order is None else design[order]
        # x* = (z - loc) / sqrt(delta*) + loc - gamma* sd / sqrt(delta*), with loc = grand mean + covariate effect:
        # per batch, z scaled in place, then the covariate and location terms added by one BLAS update
        effects = np.vstack([self.covariate_coef_, self.grand_mean_])
        scale = 1 / np.sqrt(self.delta_star_)
        shift = self.gamma_star_ * np.sqrt(self.var_pooled_) * scale
        for k, rows in enumerate(_slices(starts, n)):
            if rows.stop > rows.start:
                block = Zs[rows]
                block *= scale[k]
                terms = effects * (1 - scale[k])
                terms[-1] -= shift[k]
                _gemm_update(block, design[rows], terms)
        harmonized = self.transform_.inverse(Zs)
        if order is not None:
            unsorted = np.empty_like(harmonized)
            unsorted[order] = harmonized
            harmonized = unsorted
        if varying.all():
            out = harmonized
        else:
            out = values.copy()
            out[:, varying] = harmonized
        if self.ref_level_ is not None:
            is_ref = batch_idx == self.ref_level_
            out[is_ref] = values[is_ref]
        self._warn_below_bound(out, names)
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=columns)[X.columns]
        return out

    def _warn_below_bound(self, out: np.ndarray, names: list[str] | None) -> None:
        """Warn, counting and naming them, about features never negative in fit that came out negative."""
        low = getattr(self, "training_min_", None)  # None: a model saved before harmony recorded it
        if low is None or not (low >= 0).any():
            return
        bounded = low >= 0
        below = (out[:, bounded] < 0).sum(axis=0)
        if not below.any():
            return
        columns = np.flatnonzero(bounded)[below > 0]
        counts = below[below > 0]
        labels = _labels(names, np.isin(np.arange(out.shape[1]), columns))
        positive = low[columns] > 0
        listed = ", ".join(f"{name!r} ({c}{'' if pos else ', has zeros'})"
                           for name, c, pos in list(zip(labels, counts, positive))[:10])
        more = f" and {len(columns) - 10} more" if len(columns) > 10 else ""
        fix = ("the log transform (or 'auto': feature_transform= in Python, --transform of harmony harmonize, "
               "transform = in [harmonization]) keeps the strictly positive ones positive; for features with zeros "
               "'log' does not apply: clip or shift them")
        warnings.warn(f"ComBat: {len(columns)} of {int(bounded.sum())} features never negative in fit came out "
                      f"negative ({int(counts.sum())} value(s)): {listed}{more}; {fix}", HarmonizationWarning,
                      stacklevel=3)

    def fit_transform(self, X: Any, y: Any = None, *, batch: Any = None,
                      covariates: pd.DataFrame | None = None) -> Any:
        """Fit on ``X`` and harmonize it: :meth:`fit`, then :meth:`transform` with the same batch and covariates.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Finite feature values, one row per sample.
        y : None
            Ignored; it is not the batch.
        batch : array-like of shape (n_samples,)
            Required: the batch of each sample (see :meth:`fit`).
        covariates : DataFrame of shape (n_samples, n_covariates), optional
            Biological covariates whose effects are preserved.

        Returns
        -------
        X_harmonized : ndarray or DataFrame of shape (n_samples, n_features)
            X's type, index and column order.
        """
        _require_batch("fit_transform", batch, y)
        return self.fit(X, y, batch=batch, covariates=covariates).transform(X, batch=batch, covariates=covariates)

    # -- persistence: versioned JSON, no pickle ----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as plain JSON-ready data (format, versions, feature names, every fitted array).

        Returns
        -------
        dict of str to Any
            ``format`` (:data:`MODEL_FORMAT`), ``format_version`` (:data:`MODEL_FORMAT_VERSION`),
            ``harmony_version``, ``params`` (:meth:`get_params`) and the fitted attributes as lists;
            :meth:`from_dict` reads it.
        """
        check_is_fitted(self)
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "harmony_version": __version__,
            "params": self.get_params(),
            "n_features": self.n_features_in_,
            "feature_names": list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None,
            "batches": self.batches_,
            "batch_counts": self.batch_counts_.tolist(),
            "ref_level": self.ref_level_,
            "constant": self.constant_.tolist(),
            "training_min": self.training_min_.tolist() if hasattr(self, "training_min_") else None,
            "covariates": [{"name": c.name, "levels": None if c.levels is None else list(c.levels)}
                           for c in self.covariates_],
            "transform": self.transform_.to_dict(),
            "estimates": {name: getattr(self, f"{name}_").tolist() for name in _ESTIMATES},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<model>") -> ComBat:
        """Rebuild a fitted model from :meth:`to_dict` output (any format version up to this one's).

        Parameters renamed since the model was written are read under their new names; other formats,
        newer versions and damaged data are refused.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned (e.g. read from a ``model.json``).
        source : str, default "<model>"
            Where ``data`` came from, for messages.

        Returns
        -------
        ComBat
            The fitted model.

        Raises
        ------
        HarmonizationError
            When ``data`` is not a harmony ComBat model, its format version is not supported, or it is
            damaged (missing keys, wrong types, array shapes that do not match).
        """
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise HarmonizationError(f"{source}: not a harmony ComBat model (format "
                                     f"{data.get('format') if isinstance(data, dict) else None!r})")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MODEL_FORMAT_VERSION:
            newer = isinstance(version, int) and version > MODEL_FORMAT_VERSION
            raise HarmonizationError(f"{source}: model format_version {version!r} is not supported (this harmony "
                                     f"reads 1 to {MODEL_FORMAT_VERSION}){'; upgrade harmony' if newer else ''}")
        try:
            params = dict(data["params"])
            for last, renamed in _RENAMED_PARAMS.items():
                if version <= last:
                    params = {renamed.get(key, key): value for key, value in params.items()}
            model = cls(**params)
            model.n_features_in_ = int(data["n_features"])
            if data["feature_names"] is not None:
                model.feature_names_in_ = np.array(data["feature_names"], dtype=object)
            model.batches_ = list(data["batches"])
            model.batch_counts_ = np.array(data["batch_counts"], dtype=int)
            model.ref_level_ = data["ref_level"]
            model.constant_ = np.array(data["constant"], dtype=bool)
            if data.get("training_min") is not None:
                model.training_min_ = np.array(data["training_min"], dtype=float)
            model.covariates_ = [Covariate(c["name"], None if c["levels"] is None else tuple(c["levels"]))
                                 for c in data["covariates"]]
            model.transform_ = transform_from_dict(data["transform"])
            for name in _ESTIMATES:
                setattr(model, f"{name}_", np.array(data["estimates"][name], dtype=float if name != "n_iter" else int))
        except (KeyError, TypeError, ValueError) as exc:
            raise HarmonizationError(f"{source}: damaged ComBat model ({type(exc).__name__}: {exc})") from None
        n_varying = int((~model.constant_).sum())
        n_terms = model._n_design_terms()
        if model.covariate_coef_.size == 0 and n_terms * n_varying == 0:  # JSON keeps no shape for an empty matrix
            model.covariate_coef_ = np.zeros((n_terms, n_varying))
        _check_loaded(model, source, n_terms)
        return model

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model as versioned JSON (atomically).

        Parameters
        ----------
        path : str or path-like
            The file to write (conventionally ``model.json``).

        Returns
        -------
        Path
            The file written.

        Examples
        --------
        >>> import tempfile
        >>> import numpy as np
        >>> import pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> X, batch = rng.normal(size=(20, 3)), np.repeat(["a", "b"], 10)
        >>> covariates = pd.DataFrame({"age": rng.uniform(20, 80, 20)})
        >>> model = ComBat().fit(X, batch=batch, covariates=covariates)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     again = ComBat.load(model.save(f"{folder}/model.json"))
        >>> before, after = (m.transform(X, batch=batch, covariates=covariates) for m in (model, again))
        >>> bool(np.allclose(before, after, rtol=0, atol=1e-12))
        True
        """
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ComBat:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            A JSON file written by :meth:`save` (by this or an earlier harmony).

        Returns
        -------
        ComBat
            The fitted model.

        Raises
        ------
        HarmonizationError
            When the file is not a supported, intact ComBat model (see :meth:`from_dict`).
        HarmonyError
            When the file cannot be read or is not JSON.
        """
        return cls.from_dict(read_json(path), source=str(path))


def _check_loaded(model: ComBat, source: str, n_terms: int) -> None:
    """Refuse a loaded model that is not what :meth:`ComBat.fit` makes: types, shapes, finiteness, domains."""
    def damaged(why: str) -> HarmonizationError:
        return HarmonizationError(f"{source}: damaged ComBat model ({why})")

    model._check_params()
    n_features, batches = model.n_features_in_, model.batches_
    if n_features < 1:
        raise damaged(f"n_features must be >= 1, got {n_features}")
    if not batches or not all(isinstance(b, str) for b in batches) or len(set(batches)) != len(batches):
        raise damaged(f"batches must be distinct texts, got {batches!r}")
    n_batch = len(batches)
    if model.constant_.shape != (n_features,):
        raise damaged(f"constant has {model.constant_.size} entries for {n_features} features")
    names = getattr(model, "feature_names_in_", None)
    if names is not None and (names.shape != (n_features,) or not all(isinstance(n, str) for n in names)
                              or len(set(names)) != n_features):
        raise damaged(f"feature_names must be {n_features} distinct texts")
    if model.batch_counts_.shape != (n_batch,) or (model.batch_counts_ < 1).any():
        raise damaged(f"batch_counts must be {n_batch} counts >= 1, got {model.batch_counts_.tolist()}")
    ref = model.ref_level_
    if ref is not None and (not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < n_batch
                            or batches[ref] != model.ref_batch):
        raise damaged(f"ref_level {ref!r} is not the index of ref_batch {model.ref_batch!r} in {batches}")
    if ref is None and model.ref_batch is not None:
        raise damaged(f"ref_batch {model.ref_batch!r} without a ref_level")
    n_varying = int((~model.constant_).sum())
    shapes = {"grand_mean": (n_varying,), "var_pooled": (n_varying,), "covariate_coef": (n_terms, n_varying),
              "n_iter": (n_batch,), **{name: (n_batch, n_varying) for name in _ESTIMATES[3:7]}}
    for name, shape in shapes.items():
        value = getattr(model, f"{name}_")
        if value.shape != shape:
            raise damaged(f"estimates.{name} has shape {value.shape}, expected {shape} for {n_features} features "
                          f"({n_varying} varying) and {n_batch} batches")
        if not np.isfinite(value).all():
            j = np.flatnonzero(~np.isfinite(value).ravel())[0]
            raise damaged(f"estimates.{name} holds {value.ravel()[j]!r}; every estimate must be finite")
    for name in ("var_pooled", "delta_hat", "delta_star"):
        value = getattr(model, f"{name}_")
        if (value <= 0).any():
            raise damaged(f"estimates.{name} holds {value[value <= 0].ravel()[0]!r}; a variance must be > 0")
    for key, value in model.transform_.to_dict().items():
        if key == "name" or not isinstance(value, (list, tuple)):
            continue  # a setting of the transform (auto's skewness threshold), not a per-feature parameter
        if len(value) != n_features:
            raise damaged(f"transform.{key} has {len(value)} entries for {n_features} features")
        # auto records each feature's choice by name, and None for "no transform" or an undefined skewness
        numbers = [v for v in value if v is not None and not isinstance(v, str)]
        if not all(np.isfinite(np.asarray(v, dtype=float)).all() for v in numbers):
            raise damaged(f"transform.{key} holds a non-finite value; every fitted parameter must be finite")


_ESTIMATES = ("grand_mean", "var_pooled", "covariate_coef", "gamma_hat", "delta_hat", "gamma_star", "delta_star",
              "n_iter")
