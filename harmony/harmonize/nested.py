"""Nested ComBat: ComBat over several batch variables in sequence (Horng et al. 2022), fitted once.

Each batch variable (manufacturer, reconstruction kernel, slice thickness, ...) is harmonized in turn by its
own :class:`~harmony.harmonize.combat.ComBat`, fitted on the output of the previous one, with the covariates.
The order is given, or chosen by OPNested's criterion (generalized-combat's ``OPNestedComBat``): after the
whole sequence, the number of (feature, batch variable) pairs whose Anderson-Darling k-sample test across
that variable's levels still has p < 0.05; the fewest wins, the first in search order on ties. OPNested
tries all ``k!`` orders; here that exhaustive search is used up to :data:`EXHAUSTIVE_MAX` variables, and a
beam search above (``beam_width`` partial orders kept per step, scored by the same criterion on the
variables harmonized so far): ``O(beam_width * k^2)`` ComBat fits instead of ``k!``. The order and the
criterion of every complete order evaluated are kept in the model; the transform applies the fitted steps
in that order.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import anderson_ksamp
from sklearn.utils.validation import check_is_fitted

from harmony.harmonize.combat import MIN_BATCH_SIZE, ComBat, _require_batch
from harmony.harmonize.family import FamilyEstimator, _inner_steps
from harmony.harmonize.inputs import HarmonizationError, _aligned, _as_batch, _as_matrix

__all__ = [
    "EXHAUSTIVE_MAX",
    "NESTED_MODEL_FORMAT",
    "NESTED_MODEL_FORMAT_VERSION",
    "NestedComBat",
    "distribution_differences",
]

#: ``format`` and ``format_version`` of a saved NestedComBat model.
NESTED_MODEL_FORMAT = "harmony.nested_combat"
NESTED_MODEL_FORMAT_VERSION = 1
#: Up to this many batch variables the optimised order is searched exhaustively (all permutations).
EXHAUSTIVE_MAX = 4
_ALPHA = 0.05


def distribution_differences(X: np.ndarray, batches: dict[str, np.ndarray]) -> int:
    """OPNested's criterion: (feature, batch variable) pairs whose levels differ in distribution (AD p < 0.05).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Feature values.
    batches : dict of str to ndarray of shape (n_samples,)
        Each batch variable's labels.

    Returns
    -------
    int
        The number of pairs with an Anderson-Darling k-sample p-value below 0.05 (scipy's p-value, floored
        at 0.001 and capped at 0.25 as in OPNested); a feature constant in a variable's levels counts as no
        difference.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> site = np.repeat(["a", "b"], 50)
    >>> X = rng.normal(size=(100, 3)) + (site == "b")[:, None] * [0.0, 0.0, 2.0]
    >>> distribution_differences(X, {"site": site})
    1
    """
    count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns each time it floors or caps the p-value
        for labels in batches.values():
            groups = [labels == level for level in np.unique(labels)]
            for j in range(X.shape[1]):
                try:
                    p = anderson_ksamp([X[g, j] for g in groups]).pvalue
                except ValueError:  # all values equal
                    continue
                count += int(p < _ALPHA)
    return count


def _batch_frame(batch: Any, n: int, samples: list | None) -> pd.DataFrame:
    """The batch variables as a DataFrame of text labels (columns ``batch0``... for a 2-d array)."""
    if isinstance(batch, pd.Series):
        batch = batch.to_frame("batch0" if batch.name is None else batch.name)
    if not isinstance(batch, pd.DataFrame):
        values = np.asarray(batch, dtype=object)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise HarmonizationError(f"batch must be a DataFrame or 2-d array of batch variables, got shape "
                                     f"{values.shape}")
        batch = pd.DataFrame(values, columns=[f"batch{k}" for k in range(values.shape[1])])
    else:
        batch = _aligned(batch, samples, "batch")
    return pd.DataFrame({str(c): _as_batch(batch[c].to_numpy(), n, None) for c in batch.columns})


class NestedComBat(FamilyEstimator):
    """ComBat over several batch variables in sequence, in a given or optimised order.

    ``batch`` is a DataFrame (or 2-d array) with one column per batch variable; ``covariates`` as for
    :class:`~harmony.harmonize.combat.ComBat`, used by every step.

    Parameters
    ----------
    order : list of str, optional
        The batch columns in the order to harmonize them; None: optimised (see the module docstring).
    beam_width : int, default 3
        Partial orders kept per step by the beam search (more than :data:`EXHAUSTIVE_MAX` variables).
    parametric, eb, mean_only, min_batch_size
        Each step's ComBat options.
    ref_batch : dict of str to str, optional
        A reference level per batch variable (those not named have none).

    Attributes
    ----------
    order_ : list of str
        The batch variables in the order applied.
    steps_ : list of ComBat
        The fitted ComBat of each, in ``order_``.
    criterion_ : dict of str to int
        For each complete order evaluated (``"a > b > c"``), the number of (feature, variable) pairs still
        differing in distribution; empty when the order was given.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> batch = pd.DataFrame({"vendor": np.tile(["A", "B"], 40), "kernel": np.repeat(["soft", "sharp"], 40)})
    >>> X = rng.normal(size=(80, 4)) + 2.0 * (batch["vendor"] == "B").to_numpy()[:, None] \\
    ...     - 1.5 * (batch["kernel"] == "sharp").to_numpy()[:, None]
    >>> model = NestedComBat().fit(X, batch=batch)
    >>> len(model.order_), distribution_differences(model.transform(X, batch=batch), dict(batch.items()))
    (2, 0)
    """

    _format, _format_version = NESTED_MODEL_FORMAT, NESTED_MODEL_FORMAT_VERSION

    def __init__(self, order: Sequence[str] | None = None, beam_width: int = 3, parametric: bool = True,
                 eb: bool = True, mean_only: bool = False, ref_batch: dict[str, str] | None = None,
                 min_batch_size: int = MIN_BATCH_SIZE):
        self.order = order
        self.beam_width = beam_width
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.min_batch_size = min_batch_size

    def _step(self, name: str) -> ComBat:
        ref = (self.ref_batch or {}).get(name)
        return ComBat(parametric=self.parametric, eb=self.eb, mean_only=self.mean_only, ref_batch=ref,
                      min_batch_size=self.min_batch_size)

    def _run(self, values, frame, covariates, prefix, start=None):
        """Fit and apply the steps of ``prefix`` (after those already in ``start``: (output, models))."""
        out, models = start if start is not None else (values, [])
        for name in prefix[len(models):]:
            try:
                model = self._step(name).fit(out, batch=frame[name].to_numpy(), covariates=covariates)
            except HarmonizationError as exc:
                raise HarmonizationError(f"batch variable {name!r}: {exc}") from None
            with _inner_steps():
                out = model.transform(out, batch=frame[name].to_numpy(), covariates=covariates)
            models = [*models, model]
        return out, models

    def _search(self, values, frame, covariates) -> tuple[list[str], dict[str, int]]:
        names = list(frame.columns)
        labels = {name: frame[name].to_numpy() for name in names}
        scores: dict[str, int] = {}
        if len(names) <= EXHAUSTIVE_MAX:  # OPNested's enumeration, depth first: shared prefixes are fitted once
            def visit(prefix, state):
                if len(prefix) == len(names):
                    scores[" > ".join(prefix)] = distribution_differences(np.asarray(state[0]), labels)
                for name in names:
                    if name not in prefix:
                        order = (*prefix, name)
                        visit(order, self._run(values, frame, covariates, order, state))

            visit((), (values, []))
            best = min(scores, key=scores.get)  # the first of the fewest, in enumeration order
            return best.split(" > "), scores
        beam = [((), (values, []))]
        for depth in range(len(names)):
            candidates = []
            for prefix, state in beam:
                for name in names:
                    if name not in prefix:
                        order = (*prefix, name)
                        out, models = self._run(values, frame, covariates, order, state)
                        harmonized = {n: labels[n] for n in order}
                        score = distribution_differences(np.asarray(out),
                                                         labels if depth == len(names) - 1 else harmonized)
                        candidates.append((score, order, (out, models)))
                        if depth == len(names) - 1:
                            scores[" > ".join(order)] = score
            candidates.sort(key=lambda c: c[0])  # stable: ties keep the search order
            beam = [(order, state) for _, order, state in candidates[:max(1, int(self.beam_width))]]
        return list(beam[0][0]), scores

    def fit(self, X: Any, y: Any = None, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> NestedComBat:
        """Choose the order (unless given) and fit one ComBat per batch variable, in sequence.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Finite feature values.
        y : None
            Ignored; it is not the batch.
        batch : DataFrame or 2-d array of shape (n_samples, n_variables)
            Required: the batch variables, one column each.
        covariates : DataFrame, optional
            Biological covariates whose effects every step preserves.

        Returns
        -------
        self : NestedComBat
        """
        _require_batch("fit", batch, y)
        values, names, samples = _as_matrix(X)
        frame = _batch_frame(batch, len(values), samples)
        covariates = None if covariates is None else _aligned(covariates, samples, "covariates")
        unknown = sorted(set(self.ref_batch or {}) - set(frame.columns))
        if unknown:
            raise HarmonizationError(f"NestedComBat: ref_batch names {unknown}, not batch variables {list(frame.columns)}")
        if self.order is not None:
            order = [str(o) for o in self.order]
            if sorted(order) != sorted(frame.columns):
                raise HarmonizationError(f"NestedComBat: order {order} must list each batch variable "
                                         f"{list(frame.columns)} once")
            self.criterion_ = {}
        else:
            order, self.criterion_ = self._search(X, frame, covariates)
        _, self.steps_ = self._run(X, frame, covariates, order)
        self.order_ = order
        self.n_features_in_ = values.shape[1]
        if names is not None:
            self.feature_names_in_ = np.array(names, dtype=object)
        return self

    def transform(self, X: Any, *, batch: Any = None, covariates: pd.DataFrame | None = None) -> Any:
        """Apply the fitted steps in ``order_`` to samples whose batch levels were all seen in fit.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The features of fit.
        batch : DataFrame or 2-d array of shape (n_samples, n_variables)
            Required: the batch variables of fit.
        covariates : DataFrame, optional
            The covariates of fit, for these samples.

        Returns
        -------
        X_harmonized : ndarray or DataFrame
            X's type, index and column order.
        """
        check_is_fitted(self)
        _require_batch("transform", batch)
        values, _, samples = _as_matrix(X)
        frame = _batch_frame(batch, len(values), samples)
        missing = [name for name in self.order_ if name not in frame.columns]
        if missing:
            raise HarmonizationError(f"batch: the model needs batch variables {self.order_}; missing {missing}")
        covariates = None if covariates is None else _aligned(covariates, samples, "covariates")
        out = X
        for name, step in zip(self.order_, self.steps_):
            try:
                with _inner_steps():
                    out = step.transform(out, batch=frame[name].to_numpy(), covariates=covariates)
            except HarmonizationError as exc:
                raise HarmonizationError(f"batch variable {name!r}: {exc}") from None
        first = self.steps_[0]
        first._warn_below_bound(first._features_of(out)[0], list(getattr(first, "feature_names_in_", [])) or None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data: the order, each step's ComBat model and the criterion.

        Returns
        -------
        dict of str to Any
            ``format`` :data:`NESTED_MODEL_FORMAT`, ``format_version``, ``harmony_version``, ``params``,
            ``order``, ``steps`` and ``criterion``.
        """
        check_is_fitted(self)
        params = self.get_params()
        params["order"] = None if self.order is None else list(self.order)
        return {**self._header(), "params": params, "order": self.order_,
                "steps": [step.to_dict() for step in self.steps_], "criterion": self.criterion_}

    @classmethod
    def _from_dict(cls, data: dict[str, Any], source: str) -> NestedComBat:
        model = cls(**data["params"])
        model.order_ = [str(name) for name in data["order"]]
        model.steps_ = [ComBat.from_dict(step, f"{source} (step {k})") for k, step in enumerate(data["steps"])]
        model.criterion_ = {str(k): int(v) for k, v in data["criterion"].items()}
        if len(model.steps_) != len(model.order_) or len({s.n_features_in_ for s in model.steps_}) != 1:
            raise ValueError("the steps do not match the order")
        model.n_features_in_ = model.steps_[0].n_features_in_
        if hasattr(model.steps_[0], "feature_names_in_"):
            model.feature_names_in_ = model.steps_[0].feature_names_in_
        return model
