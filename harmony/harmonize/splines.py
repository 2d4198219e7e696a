"""Penalised regression B-splines for smooth covariate effects: knots, basis and second-derivative penalty.

The same basis and penalty as statsmodels' ``BSplines`` (which neuroHarmonize's ComBat-GAM uses): interior
knots at equally spaced quantiles of the covariate (R's quantile type 7), ``degree + 1`` boundary knots at
each end, the first basis function dropped (the intercept lives in the batch columns), and the penalty the
integral of the products of the basis functions' second derivatives, by Simpson's rule on the knots plus
three points between consecutive knots.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import simpson
from scipy.interpolate import BSpline

__all__ = ["spline_basis", "spline_knots", "spline_penalty"]


def spline_knots(x: np.ndarray, df: int, degree: int, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """The full knot vector of a B-spline basis with ``df - 1`` functions (after the first is dropped).

    Parameters
    ----------
    x : ndarray of shape (n,)
        The covariate's training values.
    df : int
        Number of B-spline functions before the first is dropped; ``df - degree - 1`` interior knots.
    degree : int
        Polynomial degree (3: cubic).
    bounds : (float, float), optional
        The boundary knots; the range of ``x`` when None (new values must then fall inside it).

    Returns
    -------
    ndarray of shape (df + degree + 1,)
        Sorted knots, each boundary knot repeated ``degree + 1`` times.

    Raises
    ------
    ValueError
        When ``df`` is too small for ``degree``, or ``bounds`` do not contain ``x``.

    Examples
    --------
    >>> spline_knots(np.arange(11.0), df=5, degree=3)
    array([ 0.,  0.,  0.,  0.,  5., 10., 10., 10., 10.])
    """
    n_inner = df - degree - 1
    if degree < 0 or n_inner < 0:
        raise ValueError(f"df={df!r} is too small for degree={degree!r}; it must be >= {degree + 1}")
    lo, hi = (float(np.min(x)), float(np.max(x))) if bounds is None else (float(bounds[0]), float(bounds[1]))
    if not lo < hi or np.min(x) < lo or np.max(x) > hi:
        raise ValueError(f"bounds ({lo}, {hi}) must be increasing and contain the values' range "
                         f"[{float(np.min(x))}, {float(np.max(x))}]")
    inner = np.quantile(x, np.linspace(0, 1, n_inner + 2)[1:-1])
    return np.sort(np.concatenate([[lo, hi] * (degree + 1), inner]))


def spline_basis(x: np.ndarray, knots: np.ndarray, degree: int, deriv: int = 0) -> np.ndarray:
    """The B-spline basis (or a derivative of it) at ``x``, without its first function.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Values inside ``[knots[0], knots[-1]]``.
    knots : ndarray
        From :func:`spline_knots`.
    degree : int
        Polynomial degree.
    deriv : int, default 0
        Derivative order.

    Returns
    -------
    ndarray of shape (n, len(knots) - degree - 2)

    Examples
    --------
    >>> knots = spline_knots(np.arange(11.0), df=5, degree=3)
    >>> basis = spline_basis(np.array([0.0, 5.0, 10.0]), knots, 3)
    >>> basis.shape, bool(np.allclose(basis[-1], [0, 0, 0, 1]))
    ((3, 4), True)
    """
    n_basis = len(knots) - degree - 1
    spline = BSpline(knots, np.eye(n_basis), degree)  # extrapolation only closes the right boundary
    if deriv:
        spline = spline.derivative(deriv)
    return spline(np.asarray(x, dtype=float))[:, 1:]


def spline_penalty(knots: np.ndarray, degree: int) -> np.ndarray:
    """The roughness penalty: integral of the products of the basis functions' second derivatives.

    Parameters
    ----------
    knots : ndarray
        From :func:`spline_knots`.
    degree : int
        Polynomial degree.

    Returns
    -------
    ndarray of shape (n_basis, n_basis)
        Symmetric, positive semi-definite.

    Examples
    --------
    >>> knots = spline_knots(np.arange(11.0), df=5, degree=3)
    >>> penalty = spline_penalty(knots, 3)
    >>> penalty.shape, bool(np.allclose(penalty, penalty.T))
    ((4, 4), True)
    """
    unique = np.unique(knots)
    steps = np.arange(4) / 4  # the knots plus 3 points between each two
    grid = np.concatenate([(unique[:-1, None] + np.diff(unique)[:, None] * steps).ravel(), unique[-1:]])
    d2 = spline_basis(grid, knots, degree, deriv=2)
    return simpson(d2[:, :, None] * d2[:, None, :], x=grid, axis=0)
