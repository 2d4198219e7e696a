"""IBSI 2 convolutional filters as pure array functions: Laplacian of Gaussian and separable wavelets.

Arrays are (z, y, x) as SimpleITK's ``GetArrayFromImage`` returns them; spacing is ``spacing_zyx`` in mm.
The definitions are the IBSI 2 reference manual's (Depeursinge et al., "Standardised convolutional filtering
for radiomics", arXiv:2006.05470) and are checked voxel by voxel against its consensus response maps
(tests/gate/test_ibsi2.py, through :mod:`harmony.gate.ibsi2`):

- **boundary conditions** use IBSI's names: ``"mirror"`` repeats the edge voxel (``dcba|abcd|dcba``),
  ``"nearest"`` extends the edge value, ``"zero"`` pads with 0, ``"periodic"`` wraps around.
- **Laplacian of Gaussian**: the kernel ``-(1/s^2) (1/(s sqrt(2 pi)))^D (D - |k|^2/s^2) exp(-|k|^2 / (2 s^2))``
  over voxel offsets ``k``, with ``s = sigma_mm / spacing`` in voxels and ``D`` the filter's dimension (2:
  in-plane per slice, or 3), truncated to ``1 + 2 floor(truncate s + 0.5)`` taps per axis: the Laplacian, in
  voxel units, of the Gaussian normalised to unit sum (the impulse response of test 2_a is this kernel).
  pyradiomics' LoG is SimpleITK's recursive Gaussian approximation normalised across scale (multiplied by
  sigma^2 in mm^2), which is why its response maps miss the reference. The kernel is the sum of ``D`` separable
  terms, so it is applied as 1-D correlations (the same products as the full kernel, in less time).
- **separable wavelets**: undecimated, with the ``pywt`` decomposition filters ``dec_lo``
  (``L``) and ``dec_hi`` (``H``); an even-length filter gets a trailing zero tap so that it has a centre.
  The band names the filter along x, y, z in that order (``"LHL"``: low-pass along x and z, high-pass along y),
  as pyradiomics names its bands. Level ``n > 1`` is *a trous*: the level ``n-1`` low-pass image
  (``L`` along every axis) filtered with the level-1 filters dilated by ``2^(n-1) - 1`` zeros between taps.
- **rotation invariance** averages the response over the 24 right-angle rotations of a 3D image (4 in-plane
  rotations in 2D): the image is rotated, filtered and rotated back, for every rotation.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["BOUNDARIES", "log_ibsi", "wavelet_ibsi", "wavelet_kernel", "right_angle_rotations"]

#: IBSI 2's boundary conditions and the scipy.ndimage mode that implements each.
BOUNDARIES = {"mirror": "reflect", "nearest": "nearest", "zero": "constant", "periodic": "wrap"}


def _mode(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    return BOUNDARIES[boundary]


def _filter_axes(array: np.ndarray, dimensions: int) -> tuple[int, ...]:
    if dimensions not in (2, 3):
        raise ValueError(f"dimensions must be 2 (in-plane, per slice) or 3, got {dimensions!r}")
    if array.ndim != 3:
        raise ValueError(f"expected a (z, y, x) array, got {array.ndim} dimensions")
    return (0, 1, 2) if dimensions == 3 else (1, 2)


def log_ibsi(array: np.ndarray, spacing_zyx: Sequence[float], sigma_mm: float, *, boundary: str = "mirror",
             truncate: float = 4.0, dimensions: int = 3) -> np.ndarray:
    """The IBSI 2 Laplacian-of-Gaussian response of a (z, y, x) image.

    Parameters
    ----------
    array : ndarray
        The image, (z, y, x).
    spacing_zyx : sequence of 3 floats
        Voxel spacing in mm along z, y, x.
    sigma_mm : float
        The Gaussian's standard deviation in mm (> 0).
    boundary : {"mirror", "nearest", "zero", "periodic"}, default "mirror"
        How the image is extended beyond its edges.
    truncate : float, default 4.0
        The kernel's half-width in units of sigma.
    dimensions : {3, 2}, default 3
        3 filters in 3D; 2 filters each axial slice in-plane (y, x).

    Returns
    -------
    ndarray
        The response, float64, the image's shape.

    Raises
    ------
    ValueError
        A non-positive ``sigma_mm``, spacing or ``truncate``, an unknown boundary, or a bad dimension.

    Notes
    -----
    The IBSI defines the filter on isotropic grids (IBSI 1 interpolation comes first). On an anisotropic grid
    the Gaussian stays isotropic in mm (``sigma_mm / spacing`` voxels along each axis) and each axis' second
    derivative is taken per voxel of that axis, as on an isotropic grid.

    Examples
    --------
    >>> impulse = np.zeros((9, 9, 9)); impulse[4, 4, 4] = 1.0
    >>> response = log_ibsi(impulse, (1.0, 1.0, 1.0), sigma_mm=1.0, boundary="zero")
    >>> round(float(response[4, 4, 4]), 5)  # -(1/s^2) (2 pi s^2)^(-3/2) * 3 at s = 1
    -0.19048
    >>> flat = log_ibsi(np.full((6, 6, 6), 7.0), (1.0, 1.0, 1.0), 1.0)  # 7 times the truncated kernel's sum
    >>> bool(np.ptp(flat) < 1e-12 and abs(flat.max()) < 2e-3)
    True
    """
    from scipy import ndimage

    if not sigma_mm > 0:
        raise ValueError(f"sigma_mm must be > 0, got {sigma_mm!r}")
    if not truncate > 0:
        raise ValueError(f"truncate must be > 0, got {truncate!r}")
    spacing = np.asarray(spacing_zyx, dtype=float)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing_zyx must be 3 positive floats, got {tuple(spacing_zyx)!r}")
    mode = _mode(boundary)
    axes = _filter_axes(array, dimensions)
    data = np.asarray(array, dtype=np.float64)
    gauss, second = {}, {}
    for axis in axes:
        s = sigma_mm / spacing[axis]
        k = np.arange(-np.floor(truncate * s + 0.5), np.floor(truncate * s + 0.5) + 1)
        g = np.exp(-k ** 2 / (2 * s ** 2)) / (s * np.sqrt(2 * np.pi))
        gauss[axis] = g
        second[axis] = g * (k ** 2 / s ** 2 - 1) / s ** 2  # d²/dk² of the 1-D Gaussian, in voxel units
    response = np.zeros_like(data)
    for axis in axes:
        term = ndimage.correlate1d(data, second[axis], axis=axis, mode=mode)
        for other in axes:
            if other != axis:
                term = ndimage.correlate1d(term, gauss[other], axis=other, mode=mode)
        response += term
    return response


def wavelet_kernel(wavelet: str, kind: str, level: int = 1) -> np.ndarray:
    """The 1-D kernel of a separable wavelet filter at a decomposition level, with a centre tap.

    Parameters
    ----------
    wavelet : str
        A ``pywt`` wavelet name (``"haar"``, ``"db2"``, ``"coif1"``, ...).
    kind : {"L", "H"}
        The low-pass (``dec_lo``) or high-pass (``dec_hi``) decomposition filter.
    level : int, default 1
        The decomposition level: level ``n`` inserts ``2^(n-1) - 1`` zeros between the taps (a trous).

    Returns
    -------
    ndarray
        The taps, an odd number of them (an even-length filter gets a trailing zero).

    Raises
    ------
    ValueError
        An unknown wavelet or kind, or a level below 1.

    Examples
    --------
    >>> wavelet_kernel("haar", "L", level=2).round(4).tolist()
    [0.7071, 0.0, 0.7071, 0.0, 0.0]
    """
    import pywt

    if kind not in ("L", "H"):
        raise ValueError(f"kind must be 'L' or 'H', got {kind!r}")
    if not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"level must be an integer >= 1, got {level!r}")
    try:
        w = pywt.Wavelet(wavelet)
    except (ValueError, TypeError):
        raise ValueError(f"wavelet must be a discrete pywt wavelet name (e.g. haar, db2, coif1), got {wavelet!r}") \
            from None
    taps = np.asarray(w.dec_lo if kind == "L" else w.dec_hi, dtype=float)
    if taps.size % 2 == 0:
        taps = np.append(taps, 0.0)
    for _ in range(level - 1):
        dilated = np.zeros(2 * taps.size - 1)
        dilated[::2] = taps
        taps = dilated
    return taps


def right_angle_rotations(dimensions: int = 3) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The right-angle rotations of a (z, y, x) array: 24 in 3D, 4 in-plane in 2D.

    Each rotation is ``(permutation, flipped axes)``: the array's axes transposed by ``permutation``, then
    reversed along ``flipped axes`` (the signed permutations of determinant +1).

    Parameters
    ----------
    dimensions : {3, 2}, default 3
        3: all rotations of the cube; 2: rotations in the (y, x) plane.

    Returns
    -------
    list of (tuple of int, tuple of int)
        The identity first.

    Examples
    --------
    >>> len(right_angle_rotations(3)), len(right_angle_rotations(2))
    (24, 4)
    """
    axes = (0, 1, 2) if dimensions == 3 else (1, 2)
    rotations = []
    for order in itertools.permutations(axes):
        permutation = (0, *order) if dimensions == 2 else order
        # the permutation's sign: +1 for an even number of inversions
        inversions = sum(1 for i, j in itertools.combinations(range(3), 2) if permutation[i] > permutation[j])
        for flips in itertools.product((False, True), repeat=len(axes)):
            if (-1) ** (inversions + sum(flips)) == 1:
                rotations.append((permutation, tuple(a for a, f in zip(axes, flips) if f)))
    return rotations


def wavelet_ibsi(array: np.ndarray, wavelet: str, band: str, *, level: int = 1, boundary: str = "mirror",
                 rotation_invariant: bool = False) -> np.ndarray:
    """One band of IBSI 2's undecimated separable wavelet transform of a (z, y, x) image.

    Parameters
    ----------
    array : ndarray
        The image, (z, y, x).
    wavelet : str
        A ``pywt`` wavelet name (``"haar"``, ``"db2"``, ``"coif1"``, ...).
    band : str
        ``L``/``H`` per filtered axis in the order x, y[, z]: 3 letters filter in 3D, 2 letters each axial
        slice in-plane.
    level : int, default 1
        The decomposition level (a trous for levels above 1).
    boundary : {"mirror", "nearest", "zero", "periodic"}, default "mirror"
        How the image is extended beyond its edges.
    rotation_invariant : bool, default False
        Average over the 24 right-angle rotations (4 in 2D).

    Returns
    -------
    ndarray
        The band's response, float64, the image's shape.

    Raises
    ------
    ValueError
        A band that is not 2 or 3 letters L/H, an unknown wavelet or boundary, or a level below 1.

    Notes
    -----
    Rotating the image, filtering it and rotating the response back is the same as filtering the image with
    the rotated filter set: along each image axis, the filter of the axis the rotation maps there, reversed when
    the rotation reverses that axis (the boundary conditions are symmetric under reversal). The filters along
    different axes commute, so each axis' filters (the a trous low-pass levels, then the band's) are applied
    together, and the rotations' filter sets share their common first steps; for an ``LLL`` or ``HHH`` band the
    24 rotations need 8 distinct filter sets.

    Examples
    --------
    >>> image = np.random.default_rng(0).normal(size=(8, 8, 8))
    >>> bands = [wavelet_ibsi(image, "haar", "".join(b), boundary="periodic") for b in
    ...          itertools.product("LH", repeat=3)]
    >>> # an orthonormal wavelet's 2^3 undecimated bands hold 2^3 times the image's energy
    >>> bool(np.isclose(sum((b ** 2).sum() for b in bands), 2 ** 3 * (image ** 2).sum()))
    True
    """
    from scipy import ndimage

    if not isinstance(band, str) or len(band) not in (2, 3) or set(band) - {"L", "H"}:
        raise ValueError(f"band must be 2 or 3 letters L/H (x, y[, z]), got {band!r}")
    if not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"level must be an integer >= 1, got {level!r}")
    mode = _mode(boundary)
    dimensions = len(band)
    axes = _filter_axes(array, dimensions)
    kernels = {(letter, n): wavelet_kernel(wavelet, letter, n) for letter in "LH" for n in range(1, level + 1)}
    letter_of = dict(zip((2, 1, 0), band))  # band letter i filters numpy axis x, y, z
    data = np.asarray(array, dtype=np.float64)

    def along(image: np.ndarray, axis: int, letter: str, reverse: bool) -> np.ndarray:
        steps = [kernels["L", n] for n in range(1, level)] + [kernels[letter, level]]
        for taps in steps:
            image = ndimage.convolve1d(image, taps[::-1] if reverse else taps, axis=axis, mode=mode)
        return image

    # a rotation (permutation, flipped) filters original axis permutation[a] with axis a's filter, reversed
    # when a is flipped: its filter set is one (letter, reversed) per filtered axis, in axis order
    rotations = right_angle_rotations(dimensions) if rotation_invariant else [((0, 1, 2), ())]
    filter_sets = []
    for permutation, flipped in rotations:
        source = {permutation[a]: a for a in axes}
        filter_sets.append(tuple((letter_of[source[b]], source[b] in flipped) for b in axes))
    # depth first over the sorted filter sets: a step's result is kept while the next set shares it
    total = np.zeros_like(data)
    path: list[np.ndarray] = [data]
    previous: tuple = ()
    for steps, count in sorted(collections.Counter(filter_sets).items()):
        shared = next((k for k, (a, b) in enumerate(zip(steps, previous)) if a != b), len(previous))
        del path[shared + 1:]
        for k in range(shared, len(steps)):
            path.append(along(path[-1], axes[k], *steps[k]))
        total += count * path[-1]
        previous = steps
    return total / len(filter_sets)
