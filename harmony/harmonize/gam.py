"""ComBat-GAM: ComBat whose covariate effects may be smooth (penalised regression splines), fitted once.

As neuroHarmonize's ``harmonizationLearn(smooth_terms=...)`` (Pomponio et al. 2020): each smooth covariate
enters the design as a cubic B-spline basis (:mod:`harmony.harmonize.splines`, statsmodels' ``BSplines``
basis), and each feature's coefficients are the penalised least squares
``(D'D + 2 alpha S) beta = D'z`` (statsmodels' ``GLMGam`` with a Gaussian family), the penalty ``S`` the
spline's integrated squared second derivative, 0 on the batch and linear covariate columns. The rest is
ComBat (:mod:`harmony.harmonize.combat`): the grand mean, pooled variance, standardisation, empirical Bayes
and adjustment, with the spline columns as covariates.

The penalty ``alpha`` of each smooth term is given, or chosen per feature by 5-fold cross-validation over
``logspace(0, 7, 11)`` with statsmodels' cost (the norm of the held-out residuals over their number), as
neuroHarmonize does through ``select_penweight_kfold``. Where this departs from neuroHarmonize 2.5.2:

- the folds are drawn once from ``random_state`` and shared by every feature and penalty (statsmodels
  reshuffles for each penalty, from the global numpy state), so a fit is reproducible;
- the penalties chosen are kept (``alpha_``), and may be given back per feature;
- a new subject's smooth covariate outside the fitted range is refused, naming it (statsmodels raises
  ``NotImplementedError``); give ``bounds`` at fit to cover a wider range;
- a batch unseen in fit is refused by name (neuroHarmonize fails with an ``IndexError``), and the model is
  JSON, not a pickle.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from harmony.harmonize.combat import MIN_BATCH_SIZE, ComBat
from harmony.harmonize.combat import MODEL_FORMAT as COMBAT_FORMAT
from harmony.harmonize.combat import MODEL_FORMAT_VERSION as COMBAT_FORMAT_VERSION
from harmony.harmonize.covariates import covariate_matrix, fit_covariates
from harmony.harmonize.inputs import HarmonizationError, _aligned, _sample
from harmony.harmonize.splines import spline_basis, spline_knots, spline_penalty

__all__ = ["ALPHA_GRID", "GAM_MODEL_FORMAT", "GAM_MODEL_FORMAT_VERSION", "ComBatGAM"]

#: ``format`` and ``format_version`` of a saved ComBatGAM model.
GAM_MODEL_FORMAT = "harmony.combat_gam"
GAM_MODEL_FORMAT_VERSION = 1
#: The penalties tried by cross-validation (statsmodels' default grid).
ALPHA_GRID = np.logspace(0, 7, 11)
_DEFAULTS = {"df": 10, "degree": 3, "alpha": None, "bounds": None}
_K_FOLDS = 5


def _smooth_specs(smooth: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``smooth`` with its defaults filled in, validated (names are covariate columns)."""
    if smooth is None:
        return {}
    if not isinstance(smooth, Mapping):
        raise HarmonizationError(f"ComBatGAM: smooth must map covariate names to options, got {smooth!r}")
    specs = {}
    for name, options in smooth.items():
        options = {} if options is None else options
        unknown = sorted(set(options) - set(_DEFAULTS)) if isinstance(options, Mapping) else None
        if unknown is None or unknown:
            raise HarmonizationError(f"ComBatGAM: smooth[{name!r}] options must be among {sorted(_DEFAULTS)}, "
                                     f"got {options!r}")
        spec = {**_DEFAULTS, **options}
        for key in ("df", "degree"):
            if not isinstance(spec[key], (int, np.integer)) or isinstance(spec[key], bool) or spec[key] < 0:
                raise HarmonizationError(f"ComBatGAM: smooth[{name!r}][{key!r}] must be a whole number >= 0, "
                                         f"got {spec[key]!r}")
        if spec["df"] < spec["degree"] + 2:
            raise HarmonizationError(f"ComBatGAM: smooth[{name!r}]: df={spec['df']} is too small for degree="
                                     f"{spec['degree']}; it must be >= {spec['degree'] + 2}")
        alpha = spec["alpha"]
        if alpha is not None and not (np.all(np.isfinite(alpha)) and np.all(np.asarray(alpha, dtype=float) >= 0)):
            raise HarmonizationError(f"ComBatGAM: smooth[{name!r}]['alpha'] must be None, a penalty >= 0 or one "
                                     f"per feature, got {alpha!r}")
        specs[str(name)] = spec
    return specs


class ComBatGAM(ComBat):
    """ComBat with smooth (penalised B-spline) covariate effects, the ComBat-GAM of neuroHarmonize.

    Same contract as :class:`~harmony.harmonize.combat.ComBat` (``batch`` and ``covariates`` keyword
    metadata, a reference batch, new subjects harmonized with their own covariates, a versioned JSON
    model); the covariates named in ``smooth`` must be numeric columns of ``covariates``.

    Parameters
    ----------
    smooth : dict of str to dict, optional
        Smooth covariates and their options: ``df`` (10: B-spline functions, one dropped), ``degree``
        (3), ``alpha`` (None: chosen per feature by cross-validation; a penalty; or one penalty per
        feature that varies in training) and ``bounds`` (None: the training range; ``(low, high)``: the
        boundary knots, so that new subjects may lie outside the training range). Without smooth
        covariates this is ComBat.
    parametric, eb, mean_only, ref_batch, feature_transform, min_batch_size
        As :class:`~harmony.harmonize.combat.ComBat`.
    random_state : int, default 0
        Seed of the cross-validation folds (used only when a penalty is chosen).

    Attributes
    ----------
    smooth_terms_ : list of dict
        Per smooth covariate: ``name``, ``degree`` and ``knots``.
    alpha_ : ndarray of shape (n_smooth, n_varying)
        The penalty of each smooth term for each varying feature.
    covariates_ : list of Covariate
        The linear covariates.
    covariate_coef_ : ndarray of shape (n_linear_terms + n_spline_columns, n_varying)
        Linear covariate effects, then the spline coefficients.

    Other attributes are those of :class:`~harmony.harmonize.combat.ComBat`.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> batch = np.repeat(["a", "b"], 60)
    >>> age = rng.uniform(20, 80, 120)
    >>> X = np.sin(age / 10)[:, None] + rng.normal(0, 0.2, (120, 4)) + np.where(batch == "b", 1.0, 0.0)[:, None]
    >>> covariates = pd.DataFrame({"age": age})
    >>> model = ComBatGAM(smooth={"age": {"alpha": 10.0}}).fit(X, batch=batch, covariates=covariates)
    >>> Y = model.transform(X, batch=batch, covariates=covariates)
    >>> bool(abs(Y[batch == "b"].mean() - Y[batch == "a"].mean()) < 0.2)  # 1.0 before
    True
    >>> model.transform(X[:1], batch=["a"], covariates=pd.DataFrame({"age": [95.0]}))
    Traceback (most recent call last):
    ...
    harmony.harmonize.inputs.HarmonizationError: covariate 'age' is 95.0 in sample row 0, outside the range the smooth term was fitted on [20.1643, 79.8326]; refit with smooth={'age': {'bounds': (low, high)}} covering it
    """

    def __init__(self, smooth: dict[str, dict[str, Any]] | None = None, parametric: bool = True, eb: bool = True,
                 mean_only: bool = False, ref_batch: str | None = None, feature_transform: str | None = None,
                 min_batch_size: int = MIN_BATCH_SIZE, random_state: int = 0):
        super().__init__(parametric=parametric, eb=eb, mean_only=mean_only, ref_batch=ref_batch,
                         feature_transform=feature_transform, min_batch_size=min_batch_size)
        self.smooth = smooth
        self.random_state = random_state

    # -- ComBat's hooks: the design's covariate part and its penalised solve ----------------------

    def _split(self, covariates: pd.DataFrame | None, samples: list | None, names: list[str]):
        """(the linear covariates or None, the smooth columns as float arrays), checked."""
        if not names:
            return covariates, []
        if not isinstance(covariates, pd.DataFrame):
            raise HarmonizationError(f"ComBatGAM: the smooth covariates {names} need covariates= (a DataFrame)")
        covariates = _aligned(covariates, samples, "covariates")
        given = [str(c) for c in covariates.columns]
        missing = [name for name in names if name not in given]
        if missing:
            raise HarmonizationError(f"covariates: smooth covariate(s) {missing} missing (columns {given})")
        covariates = covariates.set_axis(given, axis=1)
        columns = []
        for name in names:
            col = covariates[name]
            if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                raise HarmonizationError(f"covariate {name!r} is smooth, so it must be numeric; got dtype {col.dtype}")
            values = col.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise HarmonizationError(f"covariate {name!r} is {float(values[i])!r} in sample {_sample(samples, i)}")
            columns.append(values)
        linear = covariates.drop(columns=names)
        return (linear if len(linear.columns) else None), columns

    def _fit_design(self, covariates, n, samples):
        specs = _smooth_specs(self.smooth)
        linear, columns = self._split(covariates, samples, list(specs))
        self.smooth_terms_ = []
        for (name, spec), x in zip(specs.items(), columns):
            try:
                knots = spline_knots(x, spec["df"], spec["degree"], spec["bounds"])
            except ValueError as exc:
                raise HarmonizationError(f"covariate {name!r}: {exc}") from None
            inner = knots[spec["degree"]:len(knots) - spec["degree"]]  # the boundary knots and the interior ones
            if not np.all(np.diff(inner) > 0):
                raise HarmonizationError(f"covariate {name!r} has {len(np.unique(x))} distinct values, too few for a "
                                         f"smooth term of df={spec['df']} (its knots coincide): model it as linear "
                                         "or lower df")
            self.smooth_terms_.append({"name": name, "degree": int(spec["degree"]), "knots": knots})
        linear_specs = fit_covariates(linear)
        return linear_specs, self._matrix(linear_specs, linear, columns, n, samples)

    def _design(self, covariates, n, samples):
        linear, columns = self._split(covariates, samples, [t["name"] for t in self.smooth_terms_])
        for term, x in zip(self.smooth_terms_, columns):
            knots = term["knots"]
            outside = (x < knots[0]) | (x > knots[-1])
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise HarmonizationError(
                    f"covariate {term['name']!r} is {float(x[i])!r} in sample {_sample(samples, i)}, outside the range "
                    f"the smooth term was fitted on [{knots[0]:.6g}, {knots[-1]:.6g}]; refit with "
                    f"smooth={{{term['name']!r}: {{'bounds': (low, high)}}}} covering it")
        return self._matrix(self.covariates_, linear, columns, n, samples)

    def _matrix(self, linear_specs, linear, columns, n, samples) -> np.ndarray:
        bases = [spline_basis(x, t["knots"], t["degree"]) for t, x in zip(self.smooth_terms_, columns)]
        return np.hstack([covariate_matrix(linear_specs, linear, n, samples), *bases])

    def _n_design_terms(self) -> int:
        return super()._n_design_terms() + sum(spec["df"] - 1 for spec in _smooth_specs(self.smooth).values())

    def _solve(self, design: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """Penalised least squares per feature, each smooth term's penalty given or chosen by cross-validation."""
        _n, n_feat = Z.shape
        specs = list(_smooth_specs(self.smooth).values())
        if not specs:
            self.alpha_ = np.zeros((0, n_feat))
            return np.linalg.lstsq(design, Z, rcond=None)[0]
        penalties, start = [], design.shape[1] - sum(len(t["knots"]) - t["degree"] - 2 for t in self.smooth_terms_)
        for term in self.smooth_terms_:
            S = spline_penalty(term["knots"], term["degree"])
            block = np.zeros((design.shape[1],) * 2)
            block[start:start + len(S), start:start + len(S)] = 2 * S
            penalties.append(block)
            start += len(S)
        DtD, DtZ = design.T @ design, design.T @ Z

        def solve(alpha, gram=DtD, cross=DtZ):
            return np.linalg.solve(gram + sum(a * P for a, P in zip(alpha, penalties)), cross)

        alpha = np.empty((len(specs), n_feat))
        free = []
        for t, spec in enumerate(specs):
            if spec["alpha"] is None:
                free.append(t)
                continue
            given = np.asarray(spec["alpha"], dtype=float)
            if given.ndim and given.shape != (n_feat,):
                raise HarmonizationError(f"ComBatGAM: smooth[{self.smooth_terms_[t]['name']!r}]['alpha'] has "
                                         f"{given.size} penalties for {n_feat} varying features")
            alpha[t] = given
        if free:
            alpha[free] = self._cross_validate(design, Z, alpha, free, solve)
        self.alpha_ = alpha
        beta = np.empty((design.shape[1], n_feat))
        combos, which = np.unique(alpha.T, axis=0, return_inverse=True)
        for k, combo in enumerate(combos):
            cols = np.flatnonzero(which.ravel() == k)
            beta[:, cols] = solve(combo, cross=DtZ[:, cols])
        return beta

    def _cross_validate(self, design, Z, alpha, free, solve) -> np.ndarray:
        """The grid penalties of the ``free`` terms with the least mean 5-fold error, per feature."""
        n = len(Z)
        folds = np.array_split(np.random.default_rng(self.random_state).permutation(n), _K_FOLDS)
        splits = []
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            splits.append((test, design[train].T @ design[train], design[train].T @ Z[train]))
        fixed = [t for t in range(len(alpha)) if t not in free]
        best_err, best = np.full(Z.shape[1], np.inf), np.zeros((len(free), Z.shape[1]))
        for combo in itertools.product(ALPHA_GRID, repeat=len(free)):
            err = np.zeros(Z.shape[1])
            for test, gram, cross in splits:
                trial = np.empty(len(alpha))
                trial[free] = combo
                if fixed:  # fixed penalties may differ per feature: solve feature by feature then
                    beta = np.column_stack([solve(_with(trial, fixed, alpha[:, j]),
                                                  gram=gram, cross=cross[:, [j]])[:, 0] for j in range(Z.shape[1])])
                else:
                    beta = solve(trial, gram=gram, cross=cross)
                err += np.linalg.norm(Z[test] - design[test] @ beta, axis=0) / len(test)
            err /= len(splits)
            better = err < best_err
            best_err[better] = err[better]
            best[:, better] = np.array(combo)[:, None]
        return best

    # -- persistence --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data: ComBat's, with the spline knots and penalties.

        Returns
        -------
        dict of str to Any
            ``format`` :data:`GAM_MODEL_FORMAT`, ``format_version`` :data:`GAM_MODEL_FORMAT_VERSION`, the
            entries of :meth:`ComBat.to_dict <harmony.harmonize.combat.ComBat.to_dict>`, ``smooth_terms``
            and ``alpha``.
        """
        check_is_fitted(self)
        data = super().to_dict()
        data.update(format=GAM_MODEL_FORMAT, format_version=GAM_MODEL_FORMAT_VERSION,
                    smooth_terms=[{**t, "knots": t["knots"].tolist()} for t in self.smooth_terms_],
                    alpha=self.alpha_.tolist())
        params = data["params"]
        params["smooth"] = {name: {**spec, "alpha": None if spec["alpha"] is None else np.asarray(spec["alpha"]).tolist(),
                                   "bounds": None if spec["bounds"] is None else list(spec["bounds"])}
                            for name, spec in _smooth_specs(self.smooth).items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<model>") -> ComBatGAM:
        """Rebuild a fitted model from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned.
        source : str, default "<model>"
            Where ``data`` came from, for messages.

        Returns
        -------
        ComBatGAM
            The fitted model.

        Raises
        ------
        HarmonizationError
            When ``data`` is not a ComBatGAM model of a supported version, or is damaged.
        """
        if not isinstance(data, dict) or data.get("format") != GAM_MODEL_FORMAT:
            raise HarmonizationError(f"{source}: not a harmony ComBatGAM model (format "
                                     f"{data.get('format') if isinstance(data, dict) else None!r})")
        if data.get("format_version") != GAM_MODEL_FORMAT_VERSION:
            raise HarmonizationError(f"{source}: ComBatGAM model format_version {data.get('format_version')!r} is "
                                     f"not supported (this harmony reads {GAM_MODEL_FORMAT_VERSION})")
        try:
            model = super().from_dict({**data, "format": COMBAT_FORMAT, "format_version": COMBAT_FORMAT_VERSION},
                                      source)
            model.smooth_terms_ = [{"name": str(t["name"]), "degree": int(t["degree"]),
                                    "knots": np.array(t["knots"], dtype=float)} for t in data["smooth_terms"]]
            model.alpha_ = np.array(data["alpha"], dtype=float).reshape(len(model.smooth_terms_), -1)
        except (KeyError, TypeError, ValueError) as exc:
            raise HarmonizationError(f"{source}: damaged ComBatGAM model ({type(exc).__name__}: {exc})") from None
        if [t["name"] for t in model.smooth_terms_] != list(_smooth_specs(model.smooth)):
            raise HarmonizationError(f"{source}: damaged ComBatGAM model (smooth terms do not match its params)")
        return model


def _with(trial: np.ndarray, fixed: list[int], values: np.ndarray) -> np.ndarray:
    out = trial.copy()
    out[fixed] = values[fixed]
    return out
