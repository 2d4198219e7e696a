"""pyradiomics' LoG image on the part of the image a crop needs: ITK's filter pass by pass, bit for bit.

``getLoGImage`` runs ``sitk.LaplacianRecursiveGaussianImageFilter``, which sums, over the axes ``d``, a second
derivative along ``d`` followed by a smoothing along each other axis in increasing order (recursive, IIR
filters along whole lines; intermediates stored as float32), each term scaled by ``1 / spacing[d]**2`` and
accumulated in float32. Lines along one axis are filtered independently, so only the first pass of each term
needs the whole image: the next pass needs only the lines through the box along the axes already filtered,
and the last only the box. Running the same 1-D filters on those lines gives the same numbers as the whole
filter cropped afterwards, at about a third of its work.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

__all__: list[str] = []  # used by harmony.extraction.shared

#: Pixel types for which the pass-by-pass filter is checked bit-identical to ITK's (tests/extraction).
_EXACT_PIXEL_TYPES = frozenset({sitk.sitkInt8, sitk.sitkUInt8, sitk.sitkInt16, sitk.sitkUInt16, sitk.sitkInt32,
                                sitk.sitkUInt32, sitk.sitkFloat32})


def _gaussian_pass(image: sitk.Image, sigma: float, order: int, axis: int) -> sitk.Image:
    f = sitk.RecursiveGaussianImageFilter()
    f.SetSigma(sigma)
    f.SetNormalizeAcrossScale(True)  # as getLoGImage sets it
    f.SetOrder(order)
    f.SetDirection(axis)
    return f.Execute(image)


def _keep(image: sitk.Image, axis: int, lower: int, upper: int) -> sitk.Image:
    """The image's indices ``lower..upper`` (inclusive) along ``axis`` (SimpleITK's x, y, z order), all of the others."""
    index, size = [0] * image.GetDimension(), list(image.GetSize())
    index[axis], size[axis] = int(lower), int(upper - lower + 1)
    return sitk.RegionOfInterest(image, size, index)


def _log_crops(image: sitk.Image, box: tuple[np.ndarray, np.ndarray] | None,
               sigma: float) -> list[tuple[sitk.Image, str]] | None:
    """``getLoGImage(image, sigma=[sigma])`` cropped to ``box`` as ``[(image, name)]``, or None when this
    shortcut does not apply (no box, not 3-D, another pixel type, or a sigma pyradiomics skips or warns about):
    the caller then runs pyradiomics' generator."""
    size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    if (box is None or image.GetDimension() != 3 or image.GetPixelID() not in _EXACT_PIXEL_TYPES
            or image.GetNumberOfComponentsPerPixel() != 1 or size.min() < 4 or not sigma > 0.0
            or not np.all(size >= np.ceil(sigma / spacing) + 1)):
        return None
    lower, upper = box
    total = None
    for axis in range(3):
        term = _keep(_gaussian_pass(image, sigma, 2, axis), axis, lower[axis], upper[axis])
        for other in (a for a in range(3) if a != axis):
            term = _keep(_gaussian_pass(term, sigma, 0, other), other, lower[other], upper[other])
        values = sitk.GetArrayViewFromImage(term).astype(np.float64) * (1.0 / spacing[axis] ** 2)
        total = (values if total is None else total.astype(np.float64) + values).astype(np.float32)
    result = sitk.GetImageFromArray(total)
    result.CopyInformation(term)
    return [(result, f"log-sigma-{str(sigma).replace('.', '-')}-mm-3D")]  # getLoGImage's name
