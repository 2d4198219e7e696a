"""Textures for procedural phantoms: correlated Gaussian random fields, piecewise-constant regions, gradients.

Arrays are in SimpleITK's array order ``(z, y, x)``; spacings given here are in the same order, in mm, so
a texture's physical scale does not depend on the grid it is drawn on. Every function draws only from the
``rng`` it is handed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["gaussian_random_field", "smooth_random_field", "piecewise_regions", "linear_gradient"]


def _gaussian_transfer(n: int, spacing_mm: float, sigma_mm: float, *, half: bool = False) -> np.ndarray:
    """Fourier transfer function of a Gaussian kernel of ``sigma_mm`` on an axis of ``n`` samples."""
    freq = np.fft.rfftfreq(n, spacing_mm) if half else np.fft.fftfreq(n, spacing_mm)  # cycles per mm
    return np.exp(-2.0 * (np.pi * sigma_mm * freq) ** 2)


def gaussian_random_field(shape: Sequence[int], spacing_mm: Sequence[float], correlation_mm: float,
                          rng: np.random.Generator) -> np.ndarray:
    """A stationary zero-mean Gaussian random field with unit variance (in expectation), float64.

    White noise is filtered in Fourier space by a Gaussian kernel whose standard deviation is
    ``correlation_mm`` (the coarseness; 0 gives white noise). The field is divided by the filter's exact
    gain, so its variance does not depend on the correlation length. Boundaries are periodic, so the
    correlation length should stay well below the grid's extent; use :func:`smooth_random_field` for
    fields smoother than the grid (bias fields).

    Parameters
    ----------
    shape : sequence of int
        The array's shape, ``(z, y, x)``.
    spacing_mm : sequence of float
        Voxel size along the same axes (mm).
    correlation_mm : float
        Standard deviation of the Gaussian kernel (mm), >= 0.
    rng : numpy.random.Generator
        The draws of the white noise.

    Returns
    -------
    numpy.ndarray
        float64, of ``shape``.

    Raises
    ------
    ValueError
        ``correlation_mm`` is negative.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> field = gaussian_random_field((32, 32, 32), (1.0, 1.0, 1.0), 2.0, rng)
    >>> field.shape, bool(abs(field.std() - 1) < 0.3)
    ((32, 32, 32), True)
    """
    shape = tuple(int(n) for n in shape)
    if correlation_mm < 0:
        raise ValueError(f"correlation_mm must be >= 0, got {correlation_mm!r}")
    white = rng.standard_normal(shape)
    if correlation_mm == 0:
        return white
    transfer = np.ones((1,) * len(shape))
    gain = 1.0  # mean |H|^2 over the full spectrum: the variance of the filtered unit white noise
    last = len(shape) - 1
    for axis, (n, d) in enumerate(zip(shape, spacing_mm)):
        h = _gaussian_transfer(n, float(d), correlation_mm, half=axis == last)
        gain *= float(np.mean(_gaussian_transfer(n, float(d), correlation_mm) ** 2))
        transfer = transfer * h.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    field = np.fft.irfftn(np.fft.rfftn(white) * transfer, s=shape, axes=range(len(shape)))
    return field / np.sqrt(gain)


def smooth_random_field(shape: Sequence[int], spacing_mm: Sequence[float], length_mm: float,
                        rng: np.random.Generator, waves: int = 64) -> np.ndarray:
    """A smooth zero-mean field with unit variance (in expectation) on a grid, float64.

    A sum of ``waves`` cosines with random phases and wave vectors drawn from ``N(0, I / length_mm**2)``
    (random Fourier features): its covariance tends to ``exp(-r**2 / (2 * length_mm**2))`` and, unlike an
    FFT-filtered field, it is not periodic, so ``length_mm`` may exceed the field of view. Each wave is
    separable along the grid axes, so the sum is one matrix product.

    Parameters
    ----------
    shape : sequence of int
        The array's shape, ``(z, y, x)``.
    spacing_mm : sequence of float
        Voxel size along the same axes (mm).
    length_mm : float
        The correlation length (mm), > 0.
    rng : numpy.random.Generator
        The draws of the wave vectors and phases.
    waves : int, default 64
        Number of cosines summed.

    Returns
    -------
    numpy.ndarray
        float64, of ``shape``.

    Raises
    ------
    ValueError
        ``length_mm`` is not positive.

    Examples
    --------
    >>> field = smooth_random_field((8, 8, 8), (1.0, 1.0, 1.0), 40.0, np.random.default_rng(0))
    >>> field.shape, bool(np.abs(np.diff(field, axis=2)).max() < 0.2)
    ((8, 8, 8), True)
    """
    if length_mm <= 0:
        raise ValueError(f"length_mm must be > 0, got {length_mm!r}")
    shape = tuple(int(n) for n in shape)
    wave_vectors = rng.standard_normal((waves, len(shape))) / length_mm
    phases = rng.uniform(0.0, 2 * np.pi, waves)
    # exp(i (k . x + phase)) = exp(i phase) * prod over axes of exp(i k_a x_a)
    factors = [np.exp(1j * np.outer(wave_vectors[:, a], np.arange(n) * d))
               for a, (n, d) in enumerate(zip(shape, spacing_mm))]
    leading = np.exp(1j * phases)[:, None] * factors[0]
    for f in factors[1:-1]:
        leading = (leading[:, :, None] * f[:, None, :]).reshape(waves, -1)
    field = (leading.T @ factors[-1]).real.reshape(shape)
    return field * np.sqrt(2.0 / waves)


def piecewise_regions(points: np.ndarray, centre: Sequence[float], radius_mm: float, n_regions: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Piecewise-constant unit-variance levels over Voronoi cells seeded uniformly in a ball.

    Parameters
    ----------
    points : numpy.ndarray
        Shape ``(3, ...)``: physical x, y, z (mm) of the points to label.
    centre : sequence of float
        Centre of the ball the cell seeds are drawn in (mm).
    radius_mm : float
        Its radius.
    n_regions : int
        Number of cells, >= 1.
    rng : numpy.random.Generator
        The draws of the seeds and the levels.

    Returns
    -------
    numpy.ndarray
        Shape ``points.shape[1:]``: the standard-normal level of each point's nearest seed.

    Raises
    ------
    ValueError
        ``n_regions`` is below 1.

    Examples
    --------
    >>> pts = np.zeros((3, 2, 2))
    >>> piecewise_regions(pts, (0, 0, 0), 5.0, 1, np.random.default_rng(1)).shape
    (2, 2)
    """
    if n_regions < 1:
        raise ValueError(f"n_regions must be >= 1, got {n_regions!r}")
    direction = rng.standard_normal((n_regions, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    seeds = np.asarray(centre, float) + direction * radius_mm * rng.uniform(size=(n_regions, 1)) ** (1 / 3)
    levels = rng.standard_normal(n_regions)
    best = np.full(points.shape[1:], np.inf)
    out = np.zeros(points.shape[1:])
    for seed, level in zip(seeds, levels):
        dist = sum((points[a] - seed[a]) ** 2 for a in range(3))
        closer = dist < best
        best = np.where(closer, dist, best)
        out = np.where(closer, level, out)
    return out


def linear_gradient(points: np.ndarray, centre: Sequence[float], radius_mm: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A linear ramp along a random direction: 0 at ``centre``, +-1 at ``radius_mm`` from it.

    Parameters
    ----------
    points : numpy.ndarray
        Shape ``(3, ...)``: physical x, y, z (mm).
    centre : sequence of float
        Where the ramp is 0 (mm).
    radius_mm : float
        Distance along the direction at which it reaches 1.
    rng : numpy.random.Generator
        The draw of the direction.

    Returns
    -------
    numpy.ndarray
        Shape ``points.shape[1:]``.

    Examples
    --------
    >>> ramp = linear_gradient(np.ones((3, 1)), (0, 0, 0), 1.0, np.random.default_rng(2))
    >>> bool(abs(ramp[0]) <= np.sqrt(3))
    True
    """
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    return sum((points[a] - centre[a]) * direction[a] for a in range(3)) / radius_mm
