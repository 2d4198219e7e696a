"""The array and grid operations behind :mod:`harmony.perturb`.

Physical-unit morphology (Euclidean distance transforms with the voxel spacing, so anisotropic voxels are
handled correctly), volume adaptation, supervoxel contour randomisation, a robust noise estimate and the
resampling of an ROI's neighbourhood. Arrays are numpy in SimpleITK's ``(z, y, x)`` order; spacings passed to
the array functions are in that order too. Every function returns new arrays and never writes to its inputs.
Expensive work runs on a crop around the ROI, so a 512x512x48 CT costs no more than its lesion's surroundings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from harmony.core.errors import HarmonyError

__all__ = ["EPS_MM", "INTERPOLATORS", "PerturbationError", "Grid", "bbox", "pad_voxels", "clip_region", "region",
           "neighbourhood", "erode", "dilate", "close", "adapt_volume", "supervoxels", "overlap_fractions",
           "randomise_contour", "estimate_noise", "warp", "resample"]

#: Distances within this many mm of a threshold count as equal (voxel spacings are stored in float).
EPS_MM = 1e-6
#: Voxels added around a crop that an interpolator reads (cubic B-spline support is 2 voxels each side).
_INTERPOLATION_BORDER = 3
#: The image interpolators a spec may name, and SimpleITK's constant for each.
INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
#: Immerkaer (1996) kernel: the difference of two 3x3 Laplacians; it cancels any locally planar signal and
#: leaves noise with variance 36 sigma^2.
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_MAD_TO_SIGMA = 1.4826


class PerturbationError(HarmonyError):
    """A variant that cannot be made for a case: the message says which, and why.

    Also raised for a bad spec parameter (on construction) and a bad chain given to :func:`harmony.apply`.
    """


# -- grids -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Grid:
    """The geometry of an image: spacing and origin in ``(x, y, z)``, direction as a 3x3 matrix.

    Parameters
    ----------
    spacing : numpy.ndarray
        Voxel size along x, y, z (mm).
    origin : numpy.ndarray
        Physical position of the first voxel's centre (mm).
    direction : numpy.ndarray
        3x3 matrix whose columns are the image axes in physical space.

    Examples
    --------
    >>> grid = Grid.of(sitk.Image(4, 3, 2, sitk.sitkUInt8))
    >>> grid.spacing_zyx.tolist(), grid.physical((1, 2, 3)).tolist()
    ([1.0, 1.0, 1.0], [[3.0, 2.0, 1.0]])
    """

    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        """The grid of a SimpleITK image.

        Parameters
        ----------
        image : SimpleITK.Image
            A 3D image.

        Returns
        -------
        Grid
        """
        return cls(np.asarray(image.GetSpacing(), float), np.asarray(image.GetOrigin(), float),
                   np.asarray(image.GetDirection(), float).reshape(3, 3))

    @property
    def spacing_zyx(self) -> np.ndarray:
        """The spacing in array order ``(z, y, x)``, as the array functions take it."""
        return self.spacing[::-1]

    def physical(self, index_zyx) -> np.ndarray:
        """Physical ``(x, y, z)`` points of continuous ``(z, y, x)`` indices (rows).

        Parameters
        ----------
        index_zyx : array-like
            One index ``(z, y, x)`` or rows of them.

        Returns
        -------
        numpy.ndarray
            Shape ``(n, 3)``: one physical point per row.
        """
        idx = np.atleast_2d(np.asarray(index_zyx, float))[:, ::-1]
        return self.origin + (idx * self.spacing) @ self.direction.T

    def index(self, points_xyz) -> np.ndarray:
        """Continuous ``(z, y, x)`` indices of physical points (rows); the inverse of :meth:`physical`.

        Parameters
        ----------
        points_xyz : array-like
            One physical point ``(x, y, z)`` or rows of them.

        Returns
        -------
        numpy.ndarray
            Shape ``(n, 3)``.
        """
        pts = np.atleast_2d(np.asarray(points_xyz, float))
        return (((pts - self.origin) @ self.direction) / self.spacing)[:, ::-1]

    def shifted(self, lo_zyx) -> Grid:
        """The grid of a crop starting at index ``lo_zyx``.

        Parameters
        ----------
        lo_zyx : array-like
            The crop's first index, ``(z, y, x)``.

        Returns
        -------
        Grid
            Same spacing and direction, origin at that voxel.
        """
        return Grid(self.spacing, self.physical(lo_zyx)[0], self.direction)

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of ``array`` (``(z, y, x)`` order) on this grid.

        Parameters
        ----------
        array : numpy.ndarray
            The voxel values.

        Returns
        -------
        SimpleITK.Image
        """
        img = sitk.GetImageFromArray(array, isVector=False)
        self._stamp(img)
        return img

    def reference(self, shape_zyx, pixel=sitk.sitkUInt8) -> sitk.Image:
        """An empty image of ``shape_zyx`` on this grid: the target of a resampling.

        Parameters
        ----------
        shape_zyx : sequence of int
            The array shape, ``(z, y, x)``.
        pixel : int, default SimpleITK.sitkUInt8
            The pixel type.

        Returns
        -------
        SimpleITK.Image
        """
        img = sitk.Image([int(n) for n in shape_zyx[::-1]], pixel)
        self._stamp(img)
        return img

    def _stamp(self, img: sitk.Image) -> None:
        img.SetSpacing([float(s) for s in self.spacing])
        img.SetOrigin([float(o) for o in self.origin])
        img.SetDirection([float(d) for d in self.direction.ravel()])


def bbox(roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive lowest and highest ``(z, y, x)`` index of a non-empty boolean ROI.

    Parameters
    ----------
    roi : numpy.ndarray of bool
        A non-empty ROI.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The lowest and the highest index along each axis.

    Examples
    --------
    >>> import numpy as np
    >>> roi = np.zeros((3, 4, 5), bool)
    >>> roi[1, 1:3, 2] = True
    >>> [b.tolist() for b in bbox(roi)]
    [[1, 1, 2], [1, 2, 2]]
    """
    idx = [np.flatnonzero(roi.any(axis=tuple(a for a in range(roi.ndim) if a != ax))) for ax in range(roi.ndim)]
    return np.array([i[0] for i in idx]), np.array([i[-1] for i in idx])


def pad_voxels(mm: float, spacing_zyx) -> np.ndarray:
    """Voxels per axis that cover ``mm`` plus one voxel, so a crop grown by them reaches beyond ``mm``.

    Parameters
    ----------
    mm : float
        The distance to cover.
    spacing_zyx : array-like
        Voxel size per axis (mm).

    Returns
    -------
    numpy.ndarray of int

    Examples
    --------
    >>> pad_voxels(2.0, (5.0, 1.0, 1.0)).tolist()
    [2, 3, 3]
    """
    return np.ceil(mm / np.asarray(spacing_zyx) - EPS_MM).astype(int) + 1


def clip_region(lo, hi, shape) -> tuple[np.ndarray, np.ndarray]:
    """An inclusive index box clipped to an array of ``shape`` (never inverted).

    Parameters
    ----------
    lo, hi : array-like
        The box's lowest and highest index per axis (inclusive); may lie outside the array.
    shape : sequence of int
        The array's shape.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)

    Examples
    --------
    >>> [b.tolist() for b in clip_region((-2, 1), (5, 9), (4, 4))]
    [[0, 1], [3, 3]]
    """
    top = np.asarray(shape) - 1
    lo = np.clip(np.asarray(lo), 0, top).astype(int)
    return lo, np.maximum(lo, np.clip(np.asarray(hi), 0, top).astype(int))


def region(lo, hi) -> tuple[slice, ...]:
    """The slices of an inclusive index box.

    Parameters
    ----------
    lo, hi : array-like
        The box's lowest and highest index per axis (inclusive).

    Returns
    -------
    tuple of slice

    Examples
    --------
    >>> region((0, 2), (1, 3))
    (slice(0, 2, None), slice(2, 4, None))
    """
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))


def neighbourhood(roi: np.ndarray, pad) -> tuple[np.ndarray, np.ndarray]:
    """The ROI's bounding box grown by ``pad`` voxels per axis, clipped to the array.

    Parameters
    ----------
    roi : numpy.ndarray of bool
        A non-empty ROI.
    pad : int or array-like of int
        Voxels to add on each side, per axis.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The inclusive lowest and highest index.

    Examples
    --------
    >>> import numpy as np
    >>> roi = np.zeros((3, 4, 5), bool)
    >>> roi[1, 1, 2] = True
    >>> [b.tolist() for b in neighbourhood(roi, 1)]
    [[0, 0, 1], [2, 2, 3]]
    """
    lo, hi = bbox(roi)
    return clip_region(lo - pad, hi + pad, roi.shape)


def _paste(shape, where: tuple[slice, ...], crop: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, dtype=crop.dtype)
    out[where] = crop
    return out


# -- physical morphology ---------------------------------------------------------------------------------

def erode(roi: np.ndarray, spacing_zyx, distance_mm: float) -> np.ndarray:
    """Keep the ROI voxels farther than ``distance_mm`` from every background voxel (a Euclidean ball).

    The image border does not erode: an ROI that fills the array is returned whole.

    Parameters
    ----------
    roi : numpy.ndarray of bool
        A non-empty ROI.
    spacing_zyx : array-like
        Voxel size per axis (mm).
    distance_mm : float
        The erosion distance, >= 0.

    Returns
    -------
    numpy.ndarray of bool
        A new array.

    Examples
    --------
    >>> import numpy as np
    >>> roi = np.zeros((1, 5, 5), bool)
    >>> roi[0, 1:4, 1:4] = True
    >>> int(erode(roi, (1.0, 1.0, 1.0), 1.0).sum())
    1
    """
    from scipy import ndimage
    where = region(*neighbourhood(roi, 1))
    crop = roi[where]
    if crop.all():  # no background in reach: only the image border bounds it, which does not erode
        return roi.copy()
    depth = ndimage.distance_transform_edt(crop, sampling=spacing_zyx)
    return _paste(roi.shape, where, depth > distance_mm + EPS_MM)


def dilate(roi: np.ndarray, spacing_zyx, distance_mm: float) -> np.ndarray:
    """Add the voxels within ``distance_mm`` of the ROI (a Euclidean ball).

    Parameters
    ----------
    roi : numpy.ndarray of bool
        A non-empty ROI.
    spacing_zyx : array-like
        Voxel size per axis (mm).
    distance_mm : float
        The dilation distance, >= 0.

    Returns
    -------
    numpy.ndarray of bool
        A new array.

    Examples
    --------
    >>> import numpy as np
    >>> roi = np.zeros((1, 5, 5), bool)
    >>> roi[0, 2, 2] = True
    >>> int(dilate(roi, (1.0, 1.0, 1.0), 1.0).sum())
    5
    """
    from scipy import ndimage
    where = region(*neighbourhood(roi, pad_voxels(distance_mm, spacing_zyx)))
    gap = ndimage.distance_transform_edt(~roi[where], sampling=spacing_zyx)
    return _paste(roi.shape, where, gap <= distance_mm + EPS_MM)


def close(roi: np.ndarray, spacing_zyx, radius_mm: float) -> np.ndarray:
    """Morphological closing with a Euclidean ball: fills gaps and dents narrower than ``2 * radius_mm``.

    Parameters
    ----------
    roi : numpy.ndarray of bool
        A non-empty ROI.
    spacing_zyx : array-like
        Voxel size per axis (mm).
    radius_mm : float
        The ball's radius.

    Returns
    -------
    numpy.ndarray of bool
        A new array holding every ROI voxel.

    Examples
    --------
    >>> import numpy as np
    >>> roi = np.zeros((1, 5, 7), bool)
    >>> roi[0, 1:4, 1:6] = True
    >>> roi[0, 2, 3] = False
    >>> bool(close(roi, (1.0, 1.0, 1.0), 1.0)[0, 2, 3])
    True
    """
    return erode(dilate(roi, spacing_zyx, radius_mm), spacing_zyx, radius_mm)


def adapt_volume(roi: np.ndarray, spacing_zyx, fraction: float) -> np.ndarray:
    """Grow or shrink the ROI to ``fraction`` of its voxel count along its signed distance map.

    Voxels are taken in order of signed distance to the surface (inside negative), ties broken by distance
    to the ROI's centroid, so growth and shrinkage follow the surface evenly (in mm) instead of scaling about
    a centre, and the count is exactly ``round(fraction * voxels)``.

    Parameters
    ----------
    roi : numpy.ndarray of bool
        A non-empty ROI.
    spacing_zyx : array-like
        Voxel size per axis (mm).
    fraction : float
        The new voxel count as a fraction of the current one, > 0.

    Returns
    -------
    numpy.ndarray of bool
        A new array of ``round(fraction * roi.sum())`` voxels.

    Raises
    ------
    PerturbationError
        The fraction leaves no voxel, or needs more voxels than the array has.

    Examples
    --------
    >>> import numpy as np
    >>> roi = np.zeros((5, 5, 5), bool)
    >>> roi[1:4, 1:4, 1:4] = True
    >>> int(adapt_volume(roi, (1.0, 1.0, 1.0), 2.0).sum())
    54
    """
    from scipy import ndimage
    n_now = int(roi.sum())
    target = int(round(n_now * fraction))
    if target < 1:
        raise PerturbationError(f"volume fraction {fraction} of {n_now} voxels leaves no voxel")
    if target > roi.size:
        raise PerturbationError(f"volume fraction {fraction} needs {target} voxels, the image has {roi.size}")
    if target == n_now:
        return roi.copy()
    spacing_zyx = np.asarray(spacing_zyx, float)
    # Growing by reach mm covers the target when the ROI is a ball; any other shape needs less.
    radius = (3.0 * n_now * np.prod(spacing_zyx) / (4.0 * np.pi)) ** (1.0 / 3.0)
    reach = radius * max(fraction ** (1.0 / 3.0) - 1.0, 0.0) + 2.0 * spacing_zyx.max()
    while True:
        lo, hi = neighbourhood(roi, pad_voxels(reach, spacing_zyx))
        where = region(lo, hi)
        crop = roi[where]
        depth = ndimage.distance_transform_edt(crop, sampling=spacing_zyx) if not crop.all() else np.zeros(crop.shape)
        signed = np.where(crop, -depth, ndimage.distance_transform_edt(~crop, sampling=spacing_zyx)).ravel()
        whole = bool(np.all(lo == 0) and np.all(hi == np.asarray(roi.shape) - 1))
        if target <= signed.size:
            offsets = (np.indices(crop.shape).reshape(3, -1).T - np.mean(np.nonzero(crop), axis=1)) * spacing_zyx
            order = np.lexsort((np.einsum("ij,ij->i", offsets, offsets), signed))[:target]
            if signed[order[-1]] <= reach or whole:  # voxels outside the crop lie farther than reach
                break
        reach *= 2.0
    chosen = np.zeros(crop.size, bool)
    chosen[order] = True
    return _paste(roi.shape, where, chosen.reshape(crop.shape))


# -- supervoxel contour randomisation --------------------------------------------------------------------

def supervoxels(image: np.ndarray, roi: np.ndarray, spacing_zyx, *, supervoxel_mm3: float, compactness: float,
                margin_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """SLIC supervoxels of the ROI's neighbourhood: ``(crop, labels)`` with labels from 1.

    Intensities are clipped to the ROI's range and scaled to [0, 1] (so ``compactness`` means the same for
    CT and MR); the smoothing is one in-plane voxel; the segment count gives supervoxels of about
    ``supervoxel_mm3``.

    Parameters
    ----------
    image : numpy.ndarray
        The image's voxels.
    roi : numpy.ndarray of bool
        A non-empty ROI on the same grid.
    spacing_zyx : array-like
        Voxel size per axis (mm).
    supervoxel_mm3 : float
        Approximate supervoxel volume.
    compactness : float
        SLIC compactness.
    margin_mm : float
        mm around the ROI's box that are segmented.

    Returns
    -------
    (tuple of slice, numpy.ndarray of int)
        The crop of the arrays that was segmented and its supervoxel labels.
    """
    from skimage.segmentation import slic

    where = region(*neighbourhood(roi, pad_voxels(margin_mm, spacing_zyx)))
    crop = image[where].astype(np.float64)
    inside = crop[roi[where]]
    low, high = float(inside.min()), float(inside.max())
    scaled = np.clip((crop - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(crop)
    n_segments = max(1, int(round(crop.size * float(np.prod(spacing_zyx)) / supervoxel_mm3)))
    labels = slic(scaled, n_segments=n_segments, compactness=compactness, spacing=np.asarray(spacing_zyx, float),
                  sigma=float(np.min(spacing_zyx)), channel_axis=None, start_label=1, enforce_connectivity=True,
                  convert2lab=False)
    return where, labels


def overlap_fractions(labels: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Fraction of each supervoxel (index = label) that lies in the ROI; 0 for unused labels.

    Parameters
    ----------
    labels : numpy.ndarray of int
        Supervoxel labels (>= 0).
    roi : numpy.ndarray of bool
        The ROI on the same crop.

    Returns
    -------
    numpy.ndarray of float
        Indexed by label.

    Examples
    --------
    >>> import numpy as np
    >>> overlap_fractions(np.array([1, 1, 2, 2]), np.array([True, False, True, True])).tolist()
    [0.0, 0.5, 1.0]
    """
    total = np.bincount(labels.ravel())
    inside = np.bincount(labels[roi], minlength=total.size)
    return np.divide(inside, total, out=np.zeros(total.size), where=total > 0)


def randomise_contour(image: np.ndarray, roi: np.ndarray, spacing_zyx, rng: np.random.Generator, *,
                      supervoxel_mm3: float, compactness: float, keep_above: float, drop_below: float,
                      closing_mm: float, margin_mm: float) -> np.ndarray:
    """Re-delineate the ROI from supervoxels (Zwanenburg et al., Sci Rep 2019).

    As in mirp: a supervoxel whose overlap fraction with the ROI is ``>= keep_above`` is kept, one with overlap
    ``< drop_below`` is dropped, each one in between is kept with probability equal to its overlap (one
    uniform draw per supervoxel, in label order), and the supervoxel of highest overlap is always kept, so
    the result is never empty. The union is closed with a ball of ``closing_mm``; closing only adds voxels,
    so supervoxels that lie fully inside the ROI are always in the result.

    Parameters
    ----------
    image : numpy.ndarray
        The image's voxels.
    roi : numpy.ndarray of bool
        A non-empty ROI on the same grid.
    spacing_zyx : array-like
        Voxel size per axis (mm).
    rng : numpy.random.Generator
        The draws of the partial supervoxels.
    supervoxel_mm3, compactness, margin_mm : float
        See :func:`supervoxels`.
    keep_above, drop_below : float
        The overlap thresholds.
    closing_mm : float
        Radius of the closing applied to the union (0: none).

    Returns
    -------
    numpy.ndarray of bool
        The new ROI, never empty.
    """
    where, labels = supervoxels(image, roi, spacing_zyx, supervoxel_mm3=supervoxel_mm3, compactness=compactness,
                                margin_mm=margin_mm)
    overlap = overlap_fractions(labels, roi[where])
    partial = np.flatnonzero((overlap >= drop_below) & (overlap < keep_above))
    drawn = partial[rng.random(partial.size) < overlap[partial]]
    chosen = np.zeros(overlap.size, bool)
    chosen[overlap >= keep_above] = True
    chosen[drawn] = True
    chosen[np.argmax(overlap)] = True  # label 0 is unused (overlap 0); the ROI overlaps some supervoxel
    chosen[0] = False
    new = _paste(roi.shape, where, chosen[labels])
    if closing_mm > 0 and new.any():
        new = close(new, spacing_zyx, closing_mm)
    return new


# -- noise -----------------------------------------------------------------------------------------------

def estimate_noise(image: np.ndarray, roi: np.ndarray | None = None, spacing_zyx=None, *,
                   margin_mm: float = 25.0) -> float:
    """Standard deviation of an image's noise: the MAD of Immerkaer's Laplacian-difference residual.

    Each slice is filtered in-plane with Immerkaer's (1996) 3x3 kernel, which removes locally planar
    signal; the residual's median absolute deviation times 1.4826, divided by 6 (the kernel's norm), estimates
    sigma. The median makes it robust to the edges the kernel does not cancel. With ``roi`` the estimate uses
    the ROI's neighbourhood (its box grown by ``margin_mm``), where the noise matters and which avoids the
    constant padding outside a CT's field of view.

    Parameters
    ----------
    image : numpy.ndarray
        A 3D image, ``(z, y, x)``.
    roi : numpy.ndarray of bool, optional
        Restrict the estimate to the ROI's neighbourhood.
    spacing_zyx : array-like, optional
        Voxel size per axis (mm); needed with ``roi``.
    margin_mm : float, default 25.0
        How far around the ROI's box the neighbourhood reaches.

    Returns
    -------
    float
        The estimated noise standard deviation.

    Raises
    ------
    PerturbationError
        The (cropped) image is not 3D or its slices are smaller than 3x3 voxels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ramp = np.linspace(0.0, 500.0, 64)[None, None, :] * np.ones((4, 64, 1))
    >>> round(estimate_noise(ramp + rng.normal(0.0, 10.0, ramp.shape)), 0)
    10.0
    """
    from scipy import ndimage
    arr = np.asarray(image, np.float64)
    if roi is not None:
        arr = arr[region(*neighbourhood(roi, pad_voxels(margin_mm, spacing_zyx)))]
    if arr.ndim != 3 or min(arr.shape[1:]) < 3:
        raise PerturbationError(f"the noise estimate needs slices of at least 3x3 voxels, got shape {arr.shape}")
    residual = ndimage.correlate(arr, _IMMERKAER[None], mode="nearest")[:, 1:-1, 1:-1]
    mad = np.median(np.abs(residual - np.median(residual)))
    return float(_MAD_TO_SIGMA * mad / np.sqrt(np.sum(_IMMERKAER ** 2)))


# -- resampling an ROI's neighbourhood -------------------------------------------------------------------

def _pixel(dtype) -> int:
    return sitk.sitkFloat64 if np.dtype(dtype) == np.float64 else sitk.sitkFloat32


def _source(array: np.ndarray, grid: Grid, lo, hi) -> sitk.Image:
    lo, hi = clip_region(lo, hi, array.shape)
    return grid.shifted(lo).image(np.ascontiguousarray(array[region(lo, hi)]))


def _covering(grid: Grid, points_xyz, border: int, shape) -> tuple[np.ndarray, np.ndarray]:
    idx = grid.index(points_xyz)
    return clip_region(np.floor(idx.min(axis=0)).astype(int) - border,
                       np.ceil(idx.max(axis=0)).astype(int) + border, shape)


def _corners(grid: Grid, lo, hi) -> np.ndarray:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    picks = np.array([[(k >> a) & 1 for a in range(3)] for k in range(8)], float)
    return grid.physical(lo + picks * (hi - lo))


def _mask_to(roi: np.ndarray, grid: Grid, reference: sitk.Image, transform: sitk.Transform, rule: str) -> np.ndarray:
    lo, hi = neighbourhood(roi, 2)
    source = grid.shifted(lo).image(roi[region(lo, hi)].astype(np.float32))
    interpolator = sitk.sitkNearestNeighbor if rule == "nearest" else sitk.sitkLinear
    moved = sitk.Resample(source, reference, transform, interpolator, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(moved) >= 0.5


def warp(image: np.ndarray, roi: np.ndarray, grid: Grid, transform: sitk.Transform, *, interpolator: str,
         margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Move image and ROI by ``transform`` (output-to-input points, SimpleITK's convention) on their grid.

    Only the neighbourhood of the ROI before and after the move, grown by ``margin_mm``, is resampled; the
    rest of the image keeps its values. The image is interpolated with ``interpolator`` (values beyond the
    image take the nearest voxel's), the mask linearly and thresholded at 0.5.

    Parameters
    ----------
    image : numpy.ndarray
        The image's voxels, ``(z, y, x)``.
    roi : numpy.ndarray of bool
        A non-empty ROI on the same grid.
    grid : Grid
        Their geometry.
    transform : SimpleITK.Transform
        Maps output points to input points.
    interpolator : {"linear", "bspline"}
        The image interpolator.
    margin_mm : float
        mm around the ROI (before and after the move) that are resampled.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray of bool)
        The moved image and ROI, on the same grid.
    """
    lo, hi = bbox(roi)
    moved = [transform.GetInverse().TransformPoint(tuple(map(float, p))) for p in _corners(grid, lo, hi)]
    pad = pad_voxels(margin_mm, grid.spacing_zyx)
    out_lo, out_hi = _covering(grid, np.vstack([_corners(grid, lo, hi), moved]), 0, roi.shape)
    out_lo, out_hi = clip_region(out_lo - pad, out_hi + pad, roi.shape)
    reference = grid.shifted(out_lo).reference(out_hi - out_lo + 1)
    needed = [transform.TransformPoint(tuple(map(float, p))) for p in _corners(grid, out_lo, out_hi)]
    src_lo, src_hi = _covering(grid, needed, _INTERPOLATION_BORDER, roi.shape)
    warped = sitk.Resample(_source(image, grid, src_lo, src_hi), reference, transform, INTERPOLATORS[interpolator],
                           0.0, _pixel(image.dtype), True)
    out = image.copy()
    where = region(out_lo, out_hi)
    out[where] = sitk.GetArrayFromImage(warped)
    return out, _paste(roi.shape, where, _mask_to(roi, grid, reference, transform, "linear"))


def resample(image: np.ndarray, roi: np.ndarray, grid: Grid, spacing_xyz, *, interpolator: str, mask_rule: str,
             margin_mm: float, back: bool) -> tuple[np.ndarray, np.ndarray, Grid]:
    """Resample the ROI's neighbourhood (its box grown by ``margin_mm``) to ``spacing_xyz``.

    The new grid is centred on the neighbourhood and covers the same extent (sizes rounded), so the same
    spacing gives back the same grid. Without ``back`` the result is that neighbourhood on the new grid (as
    pyradiomics does when it resamples); with ``back`` it is resampled again onto the original grid and pasted
    into the full image. Masks follow ``mask_rule``: nearest neighbour, or linear then threshold 0.5.

    Parameters
    ----------
    image : numpy.ndarray
        The image's voxels, ``(z, y, x)``.
    roi : numpy.ndarray of bool
        A non-empty ROI on the same grid.
    grid : Grid
        Their geometry.
    spacing_xyz : array-like
        The new voxel size (mm), x, y, z.
    interpolator : {"linear", "bspline"}
        The image interpolator.
    mask_rule : {"nearest", "linear"}
        How the mask is resampled.
    margin_mm : float
        mm around the ROI's box that are resampled.
    back : bool
        Resample back onto the original grid and paste into the full image.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray of bool, Grid)
        The image, the ROI and their grid (the original grid when ``back``).
    """
    identity = sitk.Transform(3, sitk.sitkIdentity)
    lo, hi = neighbourhood(roi, pad_voxels(margin_mm, grid.spacing_zyx))
    shape = hi - lo + 1
    new_spacing = np.asarray(spacing_xyz, float)
    new_shape = np.maximum(1, np.round(shape * grid.spacing_zyx / new_spacing[::-1])).astype(int)
    centre = grid.physical((lo + hi) / 2.0)[0]
    new_grid = Grid(new_spacing, centre - grid.direction @ ((new_shape[::-1] - 1) / 2.0 * new_spacing), grid.direction)
    reference = new_grid.reference(new_shape)
    interp = INTERPOLATORS[interpolator]
    pixel = _pixel(image.dtype)
    source = _source(image, grid, lo - _INTERPOLATION_BORDER, hi + _INTERPOLATION_BORDER)
    new_image = sitk.Resample(source, reference, identity, interp, 0.0, pixel, True)
    new_roi = _mask_to(roi, grid, reference, identity, mask_rule)
    if not back:
        return sitk.GetArrayFromImage(new_image), new_roi, new_grid
    home = grid.shifted(lo).reference(shape)
    where = region(lo, hi)
    out = image.copy()
    out[where] = sitk.GetArrayFromImage(sitk.Resample(new_image, home, identity, interp, 0.0, pixel, True))
    if not new_roi.any():
        return out, np.zeros_like(roi), grid
    return out, _paste(roi.shape, where, _mask_to(new_roi, new_grid, home, identity, mask_rule)), grid
