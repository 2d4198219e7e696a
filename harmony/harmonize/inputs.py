"""What ComBat accepts: a samples x features matrix (DataFrame or array), batch labels and covariates, aligned."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harmony.core.errors import HarmonyError
from harmony.core.notices import HarmonyWarning

__all__ = ["Degenerate", "HarmonizationError", "HarmonizationWarning"]


class HarmonizationError(HarmonyError):
    """Input ComBat cannot harmonize: the message names the feature, sample, batch or covariate."""


class HarmonizationWarning(HarmonyWarning):
    """A harmonization that ran but may mislead; the message names the features, batches and counts.

    Raised for a small batch, values out of their training bounds, a degenerate statistic, or a site effect
    that did not fall; ``harmony harmonize`` and ``harmony run`` print each once.
    """


#: How many (feature, batch) pairs a warning lists before it says "and N more".
_LISTED = 10


class Degenerate:
    """Collects degenerate statistics (feature, batch, why) and reports each kind once, as one warning.

    Parameters
    ----------
    who : str
        The estimator the statistics belong to (the warnings start with it).

    Examples
    --------
    >>> import warnings
    >>> found = Degenerate("ComBat")
    >>> found.add("zero variance within the batch; taken as 1", "f1", "site_a")
    >>> found.add("zero variance within the batch; taken as 1", "f2", "site_a")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     found.warn()
    >>> print(caught[0].message)
    ComBat: zero variance within the batch; taken as 1: 2 case(s): 'f1' in 'site_a', 'f2' in 'site_a'
    """

    def __init__(self, who: str):
        self.who = who
        self.found: dict[str, list[tuple[str | None, str | None]]] = {}

    def add(self, why: str, feature: str | None = None, batch: str | None = None) -> None:
        """Record one degenerate statistic.

        Parameters
        ----------
        why : str
            What is degenerate and what was done about it (the warnings are grouped by it).
        feature, batch : str, optional
            Where.
        """
        self.found.setdefault(why, []).append((feature, batch))

    def warn(self, stacklevel: int = 3) -> None:
        """Emit one :class:`HarmonizationWarning` per kind, naming the first cases and counting all.

        Parameters
        ----------
        stacklevel : int, default 3
            Passed to :func:`warnings.warn`.
        """
        for why, where in self.found.items():
            named = [" in ".join(repr(w) for w in pair if w is not None) for pair in where[:_LISTED]]
            more = f" and {len(where) - _LISTED} more" if len(where) > _LISTED else ""
            warnings.warn(f"{self.who}: {why}: {len(where)} case(s): {', '.join(named)}{more}", HarmonizationWarning,
                          stacklevel=stacklevel)
        self.found.clear()


def _sample(samples: Sequence | None, i: int) -> str:
    return f"row {i}" if samples is None else repr(samples[i])


def _feature(names: Sequence[str] | None, j: int) -> str:
    return f"column {j}" if names is None else repr(names[j])


def _labels(names: Sequence[str] | None, keep: np.ndarray) -> list[str]:
    """Names of the kept features for messages (``column <j>`` when X had no names)."""
    return [names[j] if names is not None else f"column {j}" for j in np.flatnonzero(keep)]


def _as_matrix(X: Any, copy: bool = True) -> tuple[np.ndarray, list[str] | None, list | None]:
    """(values samples x features float64, feature names or None, sample labels or None); all finite.

    With ``copy=False`` a float64 array is returned as it is (the caller must not write into it).
    """
    if isinstance(X, pd.DataFrame):
        names, samples = [str(c) for c in X.columns], list(X.index)
        for name in X.columns:
            if not pd.api.types.is_numeric_dtype(X[name]) or pd.api.types.is_bool_dtype(X[name]):
                raise HarmonizationError(f"feature {str(name)!r} is not numeric (dtype {X[name].dtype})")
        values = X.to_numpy(dtype=float, na_value=np.nan)
    else:
        names = samples = None
        try:
            values = np.array(X, dtype=float, copy=copy or None)
        except (TypeError, ValueError) as exc:
            raise HarmonizationError(f"X must be a numeric samples x features array or DataFrame ({exc})") from None
    if values.ndim != 2:
        raise HarmonizationError(f"X must be 2-d (samples x features), got shape {values.shape}")
    if np.isfinite(values.sum()):  # one pass, no temporary; a sum that overflows is checked value by value
        return values, names, samples
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        raise HarmonizationError(f"feature {_feature(names, j)} is {float(values[i, j])!r} in sample "
                                 f"{_sample(samples, i)} ({int(bad.sum())} non-finite value(s)); ComBat needs "
                                 "finite values: drop or impute them first")
    return values, names, samples


def _aligned(obj: Any, samples: list | None, what: str) -> Any:
    """``obj`` in the row order of X when both are pandas objects with the same labels."""
    if samples is None or not isinstance(obj, (pd.Series, pd.DataFrame)) or obj.index.equals(pd.Index(samples)):
        return obj
    if obj.index.is_unique and set(obj.index) == set(samples):
        return obj.loc[samples]
    raise HarmonizationError(f"{what}: its index does not match X's sample labels; align them (or pass plain "
                             "arrays in the same row order)")


def _as_batch(batch: Any, n: int, samples: list | None) -> np.ndarray:
    batch = _aligned(batch, samples, "batch")
    values = list(batch.to_numpy() if isinstance(batch, (pd.Series, pd.Index))
                  else np.ravel(np.asarray(batch, dtype=object)))
    if len(values) != n:
        raise HarmonizationError(f"batch has {len(values)} labels for {n} samples")
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            raise HarmonizationError(f"batch: missing label in sample {_sample(samples, i)}")
    return np.array([str(v) for v in values], dtype=object)
