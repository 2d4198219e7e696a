"""Scanner profiles (point-spread function, noise, sampling, calibration) and imaging a phantom with one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from harmony.phantoms import textures
from harmony.phantoms.render import _set_geometry

__all__ = ["acquire"]


_FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def acquire(image: sitk.Image, mask: sitk.Image, profile: Mapping[str, Any],
            rng: np.random.Generator) -> tuple[sitk.Image, sitk.Image]:
    """Image a phantom with a scanner profile (:data:`SCANNER`): what that scanner would reconstruct.

    The phantom is blurred by the point-spread function combined with the integration over each output
    voxel (a box of the output voxel size, whose part the input voxel already integrates is removed), then
    resampled linearly to the scanner's grid over the same field of view (same centre and axes). The
    optional bias field multiplies the signal, noise (white, or correlated with ``noise.correlation_mm``) is
    added, and the calibration ``scale * x + offset`` is applied last. The mask is resampled by nearest
    neighbour.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The phantom (e.g. from :func:`harmony.render_phantom`), on a finer grid than the scanner's.
    profile : mapping
        A validated scanner profile (:func:`load_scanner`).
    rng : numpy.random.Generator
        The draws of the bias field and the noise.

    Returns
    -------
    (SimpleITK.Image, SimpleITK.Image)
        The scan (float32) and its mask (uint8), on the scanner's grid.

    Examples
    --------
    >>> from harmony.core.config import validate
    >>> from harmony.phantoms import render_phantom
    >>> from harmony.phantoms.specs import SCANNER
    >>> image, mask = render_phantom({"grid": {"size": [20, 20, 20]}, "lesion": {"radius_mm": 5}}, 0)
    >>> profile = validate({"resolution": {"slice_mm": 2.5}, "noise": {"sd": 5}}, SCANNER)
    >>> scan, scan_mask = acquire(image, mask, profile, np.random.default_rng(0))
    >>> scan.GetSize(), scan.GetSpacing()
    ((20, 20, 8), (1.0, 1.0, 2.5))
    """
    spacing_in = np.asarray(image.GetSpacing())
    size_in = np.asarray(image.GetSize())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    res, psf = profile["resolution"], profile["psf"]
    spacing_out = np.array([res["pixel_mm"], res["pixel_mm"], res["slice_mm"]])
    psf_sigma = (np.asarray(psf["sigma_mm"], float) if psf["sigma_mm"]
                 else np.asarray(psf["fwhm_mm"] or [0.0] * 3, float) / _FWHM_PER_SIGMA)
    sigma = np.sqrt(psf_sigma ** 2 + np.maximum(spacing_out ** 2 - spacing_in ** 2, 0.0) / 12)
    blurred = gaussian_filter(sitk.GetArrayFromImage(image).astype(np.float64), (sigma / spacing_in)[::-1],
                              mode="nearest")
    size_out = np.floor((size_in - 1) * spacing_in / spacing_out + 1e-9).astype(int) + 1
    centre = np.asarray(image.GetOrigin()) + direction @ ((size_in - 1) * spacing_in / 2)
    origin_out = centre - direction @ ((size_out - 1) * spacing_out / 2)
    reference = _set_geometry(sitk.Image([int(v) for v in size_out], sitk.sitkFloat32), spacing_out, origin_out,
                              direction)
    source = sitk.GetImageFromArray(blurred)
    source.CopyInformation(image)
    values = sitk.GetArrayFromImage(sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                  sitk.sitkFloat64))
    grid_spacing = spacing_out[::-1]
    bias = profile["bias_field"]
    if bias["amplitude"]:
        values *= np.exp(bias["amplitude"] * textures.smooth_random_field(values.shape, grid_spacing,
                                                                          bias["length_mm"], rng))
    noise = profile["noise"]
    if noise["sd"]:
        values += noise["sd"] * textures.gaussian_random_field(values.shape, grid_spacing, noise["correlation_mm"],
                                                               rng)
    calibration = profile["calibration"]
    scan = sitk.GetImageFromArray((calibration["scale"] * values + calibration["offset"]).astype(np.float32))
    scan.CopyInformation(reference)
    scan_mask = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return scan, scan_mask
