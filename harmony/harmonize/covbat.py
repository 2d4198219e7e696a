"""CovBat: ComBat, then the site effect in the covariance between features (Chen et al. 2022), fitted once.

As the authors' ``covbat`` (R package CovBat and its Python script, github.com/andy1764/CovBat_Harmonization):

1. ComBat (:class:`~harmony.harmonize.combat.ComBat`, with covariates) and its harmonized residuals
   ``r = x* - grand_mean - covariate effect``;
2. the residuals standardised per feature (mean, population SD) and their principal components;
3. the first ``n_pc`` scores harmonized by ComBat without covariates (no empirical Bayes by default, as the
   authors), where ``n_pc`` is the fewest components whose cumulated explained variance exceeds ``pct_var``
   (0.95, R's rule) or is given;
4. back-projected, unstandardised, and the grand mean and covariate effects added back.

:meth:`CovBat.transform` applies the fitted ComBat, scaling, components and score ComBat to new subjects of
the training batches, with their covariates; the part of a new subject's residual outside the training
components is kept as it is (for the training subjects it is zero). With ``ref_batch`` both ComBat steps map
onto the reference batch, whose rows are returned unchanged. The authors' Python script differs from their R
package (and from this) in two places: its empirical Bayes prior variance ``t2`` divides by ``n`` instead of
``n - 1``, and it rounds the explained-variance ratios to 4 decimals before choosing ``n_pc``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from harmony.harmonize.combat import MIN_BATCH_SIZE, ComBat, _require_batch
from harmony.harmonize.family import FamilyEstimator, _inner_steps
from harmony.harmonize.inputs import HarmonizationError, _as_batch

__all__ = ["COVBAT_MODEL_FORMAT", "COVBAT_MODEL_FORMAT_VERSION", "CovBat"]

#: ``format`` and ``format_version`` of a saved CovBat model.
COVBAT_MODEL_FORMAT = "harmony.covbat"
COVBAT_MODEL_FORMAT_VERSION = 1
_ARRAYS = ("scale_mean", "scale_sd", "pca_mean", "components", "explained_variance_ratio")


class CovBat(FamilyEstimator):
    """CovBat harmonization (ComBat, then the principal component scores) with the scikit-learn contract.

    ``batch`` and ``covariates`` are keyword metadata of :meth:`fit` and :meth:`transform`, as for
    :class:`~harmony.harmonize.combat.ComBat`.

    Parameters
    ----------
    parametric, eb, mean_only, ref_batch, min_batch_size
        The ComBat step's options (see :class:`~harmony.harmonize.combat.ComBat`).
    pct_var : float, default 0.95
        Harmonize the fewest leading scores whose explained variance exceeds this fraction.
    n_pc : int, optional
        The number of scores to harmonize; overrides ``pct_var``.
    score_eb : bool, default False
        Empirical Bayes in the ComBat of the scores (the authors' default is without).

    Attributes
    ----------
    combat_ : ComBat
        The fitted first step.
    score_combat_ : ComBat
        The ComBat of the first ``n_pc_`` scores.
    n_pc_ : int
        Scores harmonized.
    explained_variance_ratio_ : ndarray
        Of every principal component of the standardised residuals.
    components_ : ndarray of shape (n_pc_, n_varying)
        The harmonized components (unit rows).
    scale_mean_, scale_sd_, pca_mean_ : ndarray of shape (n_varying,)
        The residuals' standardisation and the mean removed before the projection.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> batch = np.repeat(["a", "b"], 50)
    >>> X = rng.normal(size=(100, 6)) + 2.0 * (batch == "b")[:, None] * rng.normal(size=(100, 1))  # b: correlated
    >>> Y = CovBat().fit(X, batch=batch).transform(X, batch=batch)
    >>> def mean_correlation(Z):
    ...     return np.corrcoef(Z.T)[np.triu_indices(6, 1)].mean()
    >>> [round(float(mean_correlation(Z[batch == "b"]) - mean_correlation(Z[batch == "a"])), 2) for Z in (X, Y)]
    [0.73, 0.04]
    """

    _format, _format_version = COVBAT_MODEL_FORMAT, COVBAT_MODEL_FORMAT_VERSION

    def __init__(self, parametric: bool = True, eb: bool = True, mean_only: bool = False, ref_batch: str | None = None,
                 pct_var: float = 0.95, n_pc: int | None = None, score_eb: bool = False,
                 min_batch_size: int = MIN_BATCH_SIZE):
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.pct_var = pct_var
        self.n_pc = n_pc
        self.score_eb = score_eb
        self.min_batch_size = min_batch_size

    def _residuals(self, X: Any, batch: Any, covariates: pd.DataFrame | None):
        """Values and ComBat output (fitted feature order), residuals and mean part (varying), batch labels, columns."""
        combat = self.combat_
        values, _, samples, columns = combat._features_of(X)  # in the fitted feature order
        with _inner_steps():
            out = combat.transform(X, batch=batch, covariates=covariates)
        harmonized = out.loc[:, columns].to_numpy(dtype=float) if columns is not None else out
        mean = combat.grand_mean_ + combat._design(covariates, len(values), samples) @ combat.covariate_coef_
        labels = _as_batch(batch, len(values), samples)
        return values, harmonized, harmonized[:, ~combat.constant_] - mean, mean, labels, columns

    def fit(self, X: Any, y: Any = None, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> CovBat:
        """Fit ComBat, the principal components of its residuals and the ComBat of their first scores.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Finite feature values.
        y : None
            Ignored; it is not the batch.
        batch : array-like of shape (n_samples,)
            Required: each sample's batch.
        covariates : DataFrame, optional
            Biological covariates whose effects are preserved.

        Returns
        -------
        self : CovBat
        """
        _require_batch("fit", batch, y)
        if not (isinstance(self.pct_var, (int, float)) and 0 < self.pct_var < 1):
            raise HarmonizationError(f"CovBat: pct_var must be between 0 and 1, got {self.pct_var!r}")
        self.combat_ = ComBat(parametric=self.parametric, eb=self.eb, mean_only=self.mean_only,
                              ref_batch=self.ref_batch, min_batch_size=self.min_batch_size).fit(
            X, batch=batch, covariates=covariates)
        _, _, resid, _, labels, _ = self._residuals(X, batch, covariates)
        self.scale_mean_ = resid.mean(axis=0)
        sd = resid.std(axis=0)
        self.scale_sd_ = np.where(sd > 0, sd, 1.0)
        standard = (resid - self.scale_mean_) / self.scale_sd_
        self.pca_mean_ = standard.mean(axis=0)
        centred = standard - self.pca_mean_
        if len(centred) >= centred.shape[1]:  # the features' Gram matrix is the smaller: its eigenvectors are faster
            variance, vectors = np.linalg.eigh(centred.T @ centred)
            variance, vt = np.clip(variance[::-1], 0, None), vectors[:, ::-1].T
        else:
            s, vt = np.linalg.svd(centred, full_matrices=False)[1:]
            variance = s**2
        self.explained_variance_ratio_ = variance / variance.sum()
        if self.n_pc is not None:
            if not isinstance(self.n_pc, (int, np.integer)) or not 1 <= self.n_pc <= len(variance):
                raise HarmonizationError(f"CovBat: n_pc must be a whole number from 1 to {len(variance)}, got "
                                         f"{self.n_pc!r}")
            n_pc = int(self.n_pc)
        else:
            n_pc = int(np.argmax(np.cumsum(self.explained_variance_ratio_) > self.pct_var)) + 1
        self.n_pc_ = n_pc
        self.components_ = vt[:n_pc]
        scores = centred @ self.components_.T
        self.score_combat_ = ComBat(parametric=self.parametric, eb=self.score_eb, ref_batch=self.ref_batch,
                                    min_batch_size=2).fit(scores, batch=labels)  # small batches: warned above
        self.n_features_in_ = self.combat_.n_features_in_
        if hasattr(self.combat_, "feature_names_in_"):
            self.feature_names_in_ = self.combat_.feature_names_in_
        return self

    def transform(self, X: Any, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> Any:
        """Harmonize samples of the training batches: ComBat, then the fitted scores' ComBat.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The features of fit.
        batch : array-like of shape (n_samples,)
            Required: each sample's batch, one seen in fit.
        covariates : DataFrame, optional
            The covariates of fit, for these samples.

        Returns
        -------
        X_harmonized : ndarray or DataFrame
            X's type, index and column order.
        """
        check_is_fitted(self)
        _require_batch("transform", batch)
        values, harmonized, resid, mean, labels, columns = self._residuals(X, batch, covariates)
        centred = (resid - self.scale_mean_) / self.scale_sd_ - self.pca_mean_
        scores = centred @ self.components_.T
        with _inner_steps():
            moved = self.score_combat_.transform(scores, batch=labels) - scores
        resid = (centred + moved @ self.components_ + self.pca_mean_) * self.scale_sd_ + self.scale_mean_
        out = harmonized.copy()
        out[:, ~self.combat_.constant_] = resid + mean
        if self.combat_.ref_level_ is not None:
            is_ref = labels == self.combat_.batches_[self.combat_.ref_level_]
            out[is_ref] = values[is_ref]
        self.combat_._warn_below_bound(out, None if columns is None else [str(c) for c in columns])
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=columns)[X.columns]
        return out

    # -- persistence --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data (the two ComBat models, the scaling and the components).

        Returns
        -------
        dict of str to Any
            ``format`` :data:`COVBAT_MODEL_FORMAT`, ``format_version``, ``harmony_version``, ``params``,
            ``combat``, ``score_combat``, ``n_pc`` and the arrays.
        """
        check_is_fitted(self)
        return {**self._header(), "combat": self.combat_.to_dict(),
                "score_combat": self.score_combat_.to_dict(), "n_pc": self.n_pc_,
                **{name: getattr(self, f"{name}_").tolist() for name in _ARRAYS}}

    @classmethod
    def _from_dict(cls, data: dict[str, Any], source: str) -> CovBat:
        model = cls(**data["params"])
        model.combat_ = ComBat.from_dict(data["combat"], f"{source} (combat)")
        model.score_combat_ = ComBat.from_dict(data["score_combat"], f"{source} (score_combat)")
        model.n_pc_ = int(data["n_pc"])
        for name in _ARRAYS:
            setattr(model, f"{name}_", np.array(data[name], dtype=float))
        n_varying = int((~model.combat_.constant_).sum())
        if model.components_.shape != (model.n_pc_, n_varying) or model.score_combat_.n_features_in_ != model.n_pc_:
            raise ValueError(f"components do not match {n_varying} features and {model.n_pc_} scores")
        model.n_features_in_ = model.combat_.n_features_in_
        if hasattr(model.combat_, "feature_names_in_"):
            model.feature_names_in_ = model.combat_.feature_names_in_
        return model
