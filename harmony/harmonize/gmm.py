"""GMM ComBat: a hidden batch found by a two-component Gaussian mixture, then ComBat (Horng et al. 2022).

As generalized-combat's ``GMMComBat``/``GMMSplit``: a two-component Gaussian mixture is fitted to each
feature; features whose smaller component holds at most ``min_fraction`` of the samples are passed over; the
feature whose mixture has the lowest AIC gives the grouping, the hidden batch. It is then harmonized with
ComBat, after (or, with ``order=None``, in the optimised order with) the known batch variables, by
:class:`~harmony.harmonize.nested.NestedComBat`. New subjects are assigned to the fitted mixture's more likely
component on the same feature, so the model applies to new data. Where it departs from generalized-combat:
the mixture is fitted to the feature itself (generalized-combat duplicates the column into a degenerate 2-d
mixture, which changes every AIC by the same kind of term), with an explicit ``random_state``; the
components are named ``gmm0`` (lower mean) and ``gmm1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from harmony.harmonize.combat import MIN_BATCH_SIZE
from harmony.harmonize.family import FamilyEstimator
from harmony.harmonize.inputs import HarmonizationError, _as_matrix
from harmony.harmonize.nested import NestedComBat, _batch_frame

__all__ = ["GMM_MODEL_FORMAT", "GMM_MODEL_FORMAT_VERSION", "HIDDEN", "GMMComBat", "hidden_batch"]

#: ``format`` and ``format_version`` of a saved GMMComBat model.
GMM_MODEL_FORMAT = "harmony.gmm_combat"
GMM_MODEL_FORMAT_VERSION = 1
#: The name of the hidden batch variable.
HIDDEN = "gmm"


def hidden_batch(values: np.ndarray, *, min_fraction: float = 0.25,
                 random_state: int = 0) -> tuple[int, dict[str, np.ndarray], np.ndarray]:
    """The feature whose two-component Gaussian mixture fits best (lowest AIC) among the balanced splits.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_features)
        Feature values.
    min_fraction : float, default 0.25
        A split whose smaller component holds at most this fraction of the samples is passed over.
    random_state : int, default 0
        Seed of every mixture's initialisation.

    Returns
    -------
    feature : int
        The chosen column.
    mixture : dict of str to ndarray
        Its components ordered by mean: ``weights``, ``means``, ``variances``.
    aic : ndarray of shape (n_features,)
        Each feature's mixture AIC (NaN when passed over: constant or unbalanced).

    Raises
    ------
    HarmonizationError
        When no feature splits into two components of more than ``min_fraction`` of the samples.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> hidden = np.repeat([0.0, 4.0], 50)
    >>> values = np.column_stack([rng.normal(0, 2, size=100), hidden + rng.normal(size=100)])
    >>> feature, mixture, aic = hidden_batch(values)
    >>> feature, mixture["means"].round(1)
    (1, array([0.2, 4. ]))
    """
    n = len(values)
    aic = np.full(values.shape[1], np.nan)
    best = None
    for j in range(values.shape[1]):
        x = np.sort(values[:, j])[:, None]  # k-means initialisation depends on row order: sorted, it does not
        if np.ptp(x) == 0:
            continue
        mixture = GaussianMixture(n_components=2, random_state=random_state).fit(x)
        labels = mixture.predict(x)
        if min(int((labels == 0).sum()), int((labels == 1).sum())) <= min_fraction * n:
            continue
        aic[j] = mixture.aic(x)
        if best is None or aic[j] < aic[best[0]]:
            best = (j, mixture)
    if best is None:
        raise HarmonizationError(f"GMM ComBat: no feature splits into two Gaussian components of more than "
                                 f"{min_fraction:.0%} of the {n} samples each; there is no hidden batch to find")
    j, mixture = best
    rank = np.argsort(mixture.means_[:, 0])
    return j, {"weights": mixture.weights_[rank], "means": mixture.means_[rank, 0],
               "variances": mixture.covariances_[rank].reshape(2)}, aic


def _assign(x: np.ndarray, mixture: dict[str, np.ndarray]) -> np.ndarray:
    """Each value's more likely component (``gmm0``/``gmm1``)."""
    loglik = (np.log(mixture["weights"]) - 0.5 * np.log(2 * np.pi * mixture["variances"])
              - (x[:, None] - mixture["means"]) ** 2 / (2 * mixture["variances"]))
    return np.array(["gmm0", "gmm1"], dtype=object)[np.argmax(loglik, axis=1)]


class GMMComBat(FamilyEstimator):
    """ComBat of a hidden batch found by a Gaussian mixture, with or after the known batch variables.

    Parameters
    ----------
    random_state : int, default 0
        Seed of the Gaussian mixtures.
    min_fraction : float, default 0.25
        Smallest share of the samples a component must exceed for its feature to be a candidate.
    order : list of str, optional
        The order of the batch variables (the known ones and ``"gmm"``); None: optimised by
        :class:`~harmony.harmonize.nested.NestedComBat`.
    parametric, eb, mean_only, min_batch_size
        Each ComBat step's options.

    Attributes
    ----------
    feature_ : int
        The column whose mixture gives the hidden batch; ``feature_name_`` its name (or ``column <j>``).
    mixture_ : dict of str to ndarray
        Its two components (``weights``, ``means``, ``variances``), ordered by mean.
    aic_ : ndarray of shape (n_features,)
        Each feature's mixture AIC (NaN when passed over).
    nested_ : NestedComBat
        The ComBat steps over the known batch variables and ``"gmm"``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> hidden = rng.random(100) < 0.5
    >>> X = rng.normal(size=(100, 4)) + 5.0 * hidden[:, None]
    >>> model = GMMComBat().fit(X)
    >>> float((model.hidden_batch(X) == np.where(hidden, "gmm1", "gmm0")).mean())
    1.0
    >>> Y = model.transform(X)
    >>> bool(abs(Y[hidden].mean() - Y[~hidden].mean()) < 0.01)
    True
    """

    _format, _format_version = GMM_MODEL_FORMAT, GMM_MODEL_FORMAT_VERSION
    _batch_required = False

    def __init__(self, random_state: int = 0, min_fraction: float = 0.25, order: Sequence[str] | None = None,
                 parametric: bool = True, eb: bool = True, mean_only: bool = False, min_batch_size: int = MIN_BATCH_SIZE):
        self.random_state = random_state
        self.min_fraction = min_fraction
        self.order = order
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.min_batch_size = min_batch_size

    def hidden_batch(self, X: Any) -> np.ndarray:
        """The hidden batch (``gmm0``/``gmm1``) of each sample, by the fitted mixture.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The features of fit.

        Returns
        -------
        ndarray of str of shape (n_samples,)
        """
        check_is_fitted(self)
        values, names, _ = _as_matrix(X)
        j = self.feature_ if names is None or not hasattr(self, "feature_names_in_") else names.index(self.feature_name_)
        return _assign(values[:, j], self.mixture_)

    def _batches(self, X: Any, batch: Any) -> pd.DataFrame:
        values, _, samples = _as_matrix(X)
        frame = pd.DataFrame(index=range(len(values))) if batch is None else _batch_frame(batch, len(values), samples)
        if samples is not None:
            frame.index = pd.Index(samples)
        if HIDDEN in frame.columns:
            raise HarmonizationError(f"batch: a batch variable is called {HIDDEN!r}, the hidden batch's name; rename it")
        frame[HIDDEN] = self.hidden_batch(X)
        return frame

    def fit(self, X: Any, y: Any = None, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> GMMComBat:
        """Find the hidden batch and fit ComBat over it (and the known batch variables).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Finite feature values.
        y : None
            Ignored; it is not the batch.
        batch : array-like, DataFrame or None
            The known batch variables (one column each), or None when the hidden batch is the only one.
        covariates : DataFrame, optional
            Biological covariates whose effects are preserved.

        Returns
        -------
        self : GMMComBat
        """
        if not 0 <= self.min_fraction < 0.5:
            raise HarmonizationError(f"GMMComBat: min_fraction must be in [0, 0.5), got {self.min_fraction!r}")
        values, names, _ = _as_matrix(X)
        self.feature_, self.mixture_, self.aic_ = hidden_batch(values, min_fraction=self.min_fraction,
                                                               random_state=self.random_state)
        self.feature_name_ = names[self.feature_] if names is not None else f"column {self.feature_}"
        self.n_features_in_ = values.shape[1]
        if names is not None:
            self.feature_names_in_ = np.array(names, dtype=object)
        frame = self._batches(X, batch)
        self.nested_ = NestedComBat(order=self.order, parametric=self.parametric, eb=self.eb,
                                    mean_only=self.mean_only, min_batch_size=self.min_batch_size).fit(
            X, batch=frame, covariates=covariates)
        return self

    def transform(self, X: Any, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> Any:
        """Assign the hidden batch by the fitted mixture and apply the fitted ComBat steps.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The features of fit.
        batch : array-like, DataFrame or None
            The known batch variables of fit (None if there were none).
        covariates : DataFrame, optional
            The covariates of fit, for these samples.

        Returns
        -------
        X_harmonized : ndarray or DataFrame
            X's type, index and column order.
        """
        check_is_fitted(self)
        return self.nested_.transform(X, batch=self._batches(X, batch), covariates=covariates)

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data: the mixture, its feature and the nested ComBat model.

        Returns
        -------
        dict of str to Any
            ``format`` :data:`GMM_MODEL_FORMAT`, ``format_version``, ``harmony_version``, ``params``,
            ``feature``, ``feature_name``, ``mixture``, ``aic`` and ``nested``.
        """
        check_is_fitted(self)
        params = self.get_params()
        params["order"] = None if self.order is None else list(self.order)
        return {**self._header(), "params": params, "feature": self.feature_, "feature_name": self.feature_name_,
                "mixture": {k: v.tolist() for k, v in self.mixture_.items()},
                "aic": [None if np.isnan(a) else float(a) for a in self.aic_], "nested": self.nested_.to_dict()}

    @classmethod
    def _from_dict(cls, data: dict[str, Any], source: str) -> GMMComBat:
        model = cls(**data["params"])
        model.nested_ = NestedComBat.from_dict(data["nested"], f"{source} (nested)")
        model.feature_, model.feature_name_ = int(data["feature"]), str(data["feature_name"])
        model.mixture_ = {k: np.array(data["mixture"][k], dtype=float).reshape(2) for k in ("weights", "means",
                                                                                           "variances")}
        model.aic_ = np.array([np.nan if a is None else a for a in data["aic"]], dtype=float)
        model.n_features_in_ = model.nested_.n_features_in_
        if hasattr(model.nested_, "feature_names_in_"):
            model.feature_names_in_ = model.nested_.feature_names_in_
        if not 0 <= model.feature_ < model.n_features_in_ or HIDDEN not in model.nested_.order_:
            raise ValueError(f"feature {model.feature_} or the hidden batch does not match the nested model")
        return model
