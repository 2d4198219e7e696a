"""Covariates of a ComBat design: typed once at fit (numeric or categorical), encoded the same at transform."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmony.harmonize.inputs import HarmonizationError, _aligned, _sample

__all__ = ["Covariate", "fit_covariates", "covariate_matrix"]


@dataclass(frozen=True)
class Covariate:
    """One covariate column as fitted: continuous (``levels is None``) or categorical with its sorted levels.

    Parameters
    ----------
    name : str
        The column name.
    levels : tuple of str, optional
        The categorical levels seen in fit, sorted (the first is the reference level, dropped from the
        design); None for a continuous covariate.

    Examples
    --------
    >>> Covariate("age").terms, Covariate("sex", ("F", "M")).terms
    (['age'], ['sex[M]'])
    """

    name: str
    levels: tuple[str, ...] | None = None

    @property
    def terms(self) -> list[str]:
        """Design-column names: the covariate itself, or ``name[level]`` for each level but the first."""
        return [self.name] if self.levels is None else [f"{self.name}[{lvl}]" for lvl in self.levels[1:]]


def fit_covariates(covariates: pd.DataFrame | None) -> list[Covariate]:
    """Learn the encoding of each covariate column (numeric: continuous; text, category, bool: categorical).

    Parameters
    ----------
    covariates : DataFrame, optional
        One column per covariate, one row per sample.

    Returns
    -------
    list of Covariate
        One per column, in column order; empty when ``covariates`` is None.

    Raises
    ------
    HarmonizationError
        When ``covariates`` is not a DataFrame.

    Warns
    -----
    UserWarning
        For a categorical covariate with a single level.

    Examples
    --------
    >>> import pandas as pd
    >>> fit_covariates(pd.DataFrame({"age": [50.0, 61.0], "sex": ["M", "F"]}))
    [Covariate(name='age', levels=None), Covariate(name='sex', levels=('F', 'M'))]
    """
    if covariates is None:
        return []
    if not isinstance(covariates, pd.DataFrame):
        raise HarmonizationError(f"covariates must be a pandas DataFrame, got {type(covariates).__name__}")
    specs = []
    for name in covariates.columns:
        col = covariates[name]
        continuous = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        levels = None if continuous else tuple(sorted({str(v) for v in col.dropna()}))
        if levels is not None and len(levels) < 2:
            warnings.warn(f"covariate {str(name)!r} has a single level {levels!r}: it carries no information "
                          "and adds nothing to the design", UserWarning, stacklevel=3)
        specs.append(Covariate(str(name), levels))
    return specs


def covariate_matrix(specs: Sequence[Covariate], covariates: pd.DataFrame | None, n: int,
                     samples: list | None = None) -> np.ndarray:
    """The covariate part of the design (n x terms), encoded with the fitted levels.

    Parameters
    ----------
    specs : sequence of Covariate
        The encodings from :func:`fit_covariates`.
    covariates : DataFrame, optional
        The covariate columns of ``specs`` (any order), one row per sample; None only when ``specs`` is empty.
    n : int
        The number of samples.
    samples : list, optional
        X's sample labels: a ``covariates`` frame with the same labels in another order is aligned to them,
        and messages name the sample.

    Returns
    -------
    ndarray of shape (n, n_terms)
        Continuous covariates as they are, categorical ones one-hot without their first level, in the order
        of :attr:`Covariate.terms`.

    Raises
    ------
    HarmonizationError
        When the columns differ from ``specs``, a value is missing or not finite, a level was not seen in fit,
        or the rows do not match ``n`` or ``samples``.

    Examples
    --------
    >>> import pandas as pd
    >>> covariates = pd.DataFrame({"age": [50.0, 61.0, 47.0], "sex": ["M", "F", "M"]})
    >>> covariate_matrix(fit_covariates(covariates), covariates, 3)
    array([[50.,  1.],
           [61.,  0.],
           [47.,  1.]])
    """
    if not specs:
        if covariates is not None and len(covariates.columns):
            raise HarmonizationError(f"covariates {list(map(str, covariates.columns))} given, but the model was "
                                     "fitted without covariates")
        return np.zeros((n, 0))
    if covariates is None:
        raise HarmonizationError(f"the model was fitted with covariates {[s.name for s in specs]}; pass them")
    covariates = _aligned(covariates, samples, "covariates")
    given = [str(c) for c in covariates.columns]
    missing = [s.name for s in specs if s.name not in given]
    extra = [c for c in given if c not in {s.name for s in specs}]
    if missing or extra:
        raise HarmonizationError(f"covariates: the model was fitted with {[s.name for s in specs]}; "
                                 f"missing {missing}, unexpected {extra}")
    if len(covariates) != n:
        raise HarmonizationError(f"covariates has {len(covariates)} rows for {n} samples")
    covariates = covariates.set_axis(given, axis=1)
    blocks = []
    for spec in specs:
        col = covariates[spec.name]
        null = col.isna().to_numpy()
        if null.any():
            raise HarmonizationError(f"covariate {spec.name!r}: missing value in sample "
                                     f"{_sample(samples, int(np.flatnonzero(null)[0]))}")
        if spec.levels is None:
            if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                raise HarmonizationError(f"covariate {spec.name!r} was continuous in fit, got dtype {col.dtype}")
            values = col.to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise HarmonizationError(f"covariate {spec.name!r} is {float(values[i])!r} in sample "
                                         f"{_sample(samples, i)}")
            blocks.append(values[:, None])
        else:
            text = np.array([str(v) for v in col], dtype=object)
            unseen = sorted(set(text) - set(spec.levels))
            if unseen:
                raise HarmonizationError(f"covariate {spec.name!r}: level {unseen[0]!r} was not seen in fit "
                                         f"(levels {list(spec.levels)})")
            blocks.append(np.column_stack([text == lvl for lvl in spec.levels[1:]] or [np.zeros((n, 0))])
                          .astype(float).reshape(n, -1))
    return np.hstack(blocks)


def _check_rank(onehot: np.ndarray, specs: Sequence[Covariate], blocks: np.ndarray) -> None:
    """Raise naming the first covariate that makes ``[batch one-hot, covariates]`` rank deficient."""
    design = np.hstack([onehot, blocks])
    if np.linalg.matrix_rank(design) == design.shape[1]:
        return
    start = onehot.shape[1]
    for spec in specs:
        stop = start + len(spec.terms)
        part = design[:, :stop]
        if np.linalg.matrix_rank(part) < part.shape[1]:
            raise HarmonizationError(
                f"the design [batch, covariates] is rank deficient (rank {np.linalg.matrix_rank(design)} of "
                f"{design.shape[1]} columns): covariate {spec.name!r} is confounded with the batch or with the "
                "covariates before it (e.g. constant, or one level per batch); ComBat cannot separate its "
                "effect from the batch effect")
        start = stop
