"""IBSI 1 mode: the image processing steps pyradiomics does differently from the IBSI, done around it.

Public entry points: :func:`ibsi_preprocess` (image and mask in, IBSI-processed image, masks and a record of the
adjustments out; used by the extraction and by the IBSI 2 phase-2 gate), :class:`IbsiExtractor` (a pyradiomics
extractor that runs it before pyradiomics and corrects the outputs after), :func:`ibsi_settings` and
:func:`ibsi_adjustments`.

What IBSI mode changes (IBSI 1 reference manual, chapter 2 and 3):

- interpolation on the IBSI grid: grid centres aligned, ``ceil(n * s / s')`` voxels per axis (pyradiomics anchors
  the grid at a corner), with the configured interpolator;
- interpolated intensities rounded to integers when the input image is integer-valued (configurable);
- the ROI interpolated linearly and kept where it is at least the partial-volume threshold (pyradiomics: nearest
  neighbour);
- range and 3-sigma outlier re-segmentation combined (range first, outlier window on what remains);
- fixed-bin-size bins counted from the re-segmentation lower bound (pyradiomics: from a multiple of the bin width);
- corrected outputs: excess kurtosis, PCA axis lengths with N-1, and the four features pyradiomics deprecated
  although the IBSI defines them, from the features they equal.

Feature computation and names stay pyradiomics'.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.core.errors import ConfigError
from harmony.core.images import as_image
from harmony.extraction.ibsi_image_types import filter_reach_voxels

__all__ = [
    "DEPRECATED_EQUIVALENTS",
    "IBSI_SECTION",
    "INTERPOLATION_ORDER",
    "REVERTIBLE",
    "IbsiExtractor",
    "IbsiSettings",
    "Preprocessed",
    "bins_from_lower_bound",
    "correct_features",
    "ibsi_adjustments",
    "ibsi_preprocess",
    "ibsi_settings",
]

#: The harmony section of a parameter dict that switches IBSI mode on (pyradiomics never sees it).
IBSI_SECTION = "ibsi"
#: The interpolators IBSI mode can run, pyradiomics name -> spline order.
INTERPOLATION_ORDER = {"sitkNearestNeighbor": 0, "sitkLinear": 1, "sitkBSpline": 3}
#: pyradiomics features deprecated although the IBSI defines them: ``class_feature -> class_feature it equals``.
#: SumVariance: sum_k (k - mu_{x+y})^2 p_{x+y}(k) = sum_ij (i + j - mu_x - mu_y)^2 p_ij (ClusterTendency);
#: Dissimilarity: sum_ij |i - j| p_ij = sum_k k p_{x-y}(k) (DifferenceAverage); GLDM (IBSI NGLDM) normalised
#: grey level non-uniformity: every ROI voxel has exactly one dependence entry, so sum_j s_ij is the grey-level
#: histogram and sum_i (sum_j s_ij)^2 / N^2 is first-order Uniformity on the same bins.
DEPRECATED_EQUIVALENTS = {
    "glcm_SumVariance": "glcm_ClusterTendency",
    "glcm_Dissimilarity": "glcm_DifferenceAverage",
    "gldm_GrayLevelNonUniformityNormalized": "firstorder_Uniformity",
}
#: GLDM DependencePercentage: dependence entries over ROI voxels, 1 by construction (one entry per voxel).
_CONSTANT_DEPRECATED = {"gldm_DependencePercentage": 1.0}
#: IBSI steps that ``revert`` can do pyradiomics' way: the grid, ROI interpolation, rounding, the combined
#: re-segmentation and the fixed-bin-size numbering.
REVERTIBLE = ("grid", "roi", "round", "resegment", "bins")
_PCA_AXES = ("MajorAxisLength", "MinorAxisLength", "LeastAxisLength")
_SPLINE_MARGIN = 12  # input voxels kept around a crop for the cubic spline's prefilter (its pole is 0.27)


@dataclass(frozen=True)
class IbsiSettings:
    """The IBSI processing of an extraction.

    Parameters
    ----------
    spacing_mm : tuple of float or None
        Target voxel spacing (x, y, z); ``None`` or a 0 entry keeps the input spacing (along that axis).
    interpolator : str
        ``sitkNearestNeighbor``, ``sitkLinear`` or ``sitkBSpline`` (cubic B-spline).
    round_intensities : bool or "auto"
        Round interpolated intensities to integers; ``"auto"`` rounds when the input is integer-valued.
    roi_threshold : float
        Partial-volume threshold of the interpolated ROI.
    resegment_range : tuple of float or None
        Range re-segmentation ``(lower, upper)``; either may be ``None`` (open).
    outlier_sigma : float or None
        Outlier re-segmentation: keep mean +- ``outlier_sigma`` standard deviations.
    pad_voxels : int or None
        Crop the interpolated grid to the ROI's box plus this many voxels (``None``: the whole grid).
    revert : str or None
        One step done pyradiomics' way, for ablation studies (:data:`REVERTIBLE`), else ``None``.

    Examples
    --------
    >>> IbsiSettings(spacing_mm=(2.0, 2.0, 2.0)).interpolator
    'sitkLinear'
    """

    spacing_mm: tuple[float, ...] | None = None
    interpolator: str = "sitkLinear"
    round_intensities: bool | str = "auto"
    roi_threshold: float = 0.5
    resegment_range: tuple[float | None, float | None] | None = None
    outlier_sigma: float | None = None
    pad_voxels: int | None = None
    revert: str | None = None

    def __post_init__(self) -> None:
        if self.revert is not None and self.revert not in REVERTIBLE:
            raise ConfigError(f"IBSI mode: revert must be one of {', '.join(REVERTIBLE)}, got {self.revert!r}")
        if self.interpolator not in INTERPOLATION_ORDER:
            raise ConfigError(f"IBSI mode: interpolator must be one of {', '.join(INTERPOLATION_ORDER)}, "
                              f"got {self.interpolator!r}")
        if self.round_intensities not in (True, False, "auto"):
            raise ConfigError(f"IBSI mode: round_intensities must be true, false or 'auto', "
                              f"got {self.round_intensities!r}")
        if not 0.0 < float(self.roi_threshold) <= 1.0:
            raise ConfigError(f"IBSI mode: roi_threshold must be in (0, 1], got {self.roi_threshold!r}")
        if self.outlier_sigma is not None and not float(self.outlier_sigma) > 0:
            raise ConfigError(f"IBSI mode: outlier_sigma must be > 0, got {self.outlier_sigma!r}")


@dataclass
class Preprocessed:
    """What :func:`ibsi_preprocess` returns.

    Parameters
    ----------
    image : SimpleITK.Image
        The interpolated (and rounded) image, float64; without interpolation the input image itself.
    mask : SimpleITK.Image
        The morphological mask (interpolated ROI, partial-volume threshold applied), voxels ``label`` or 0.
    intensity_mask : SimpleITK.Image
        ``mask`` after re-segmentation, voxels ``label`` or 0.
    resegment_range : tuple of float or None
        The combined re-segmentation as one absolute range (lower, upper), or ``None`` without re-segmentation.
    adjustments : list of dict
        One record per step done (``step`` and what it did, with the numbers).
    """

    image: sitk.Image
    mask: sitk.Image
    intensity_mask: sitk.Image
    resegment_range: tuple[float, float] | None
    adjustments: list[dict[str, Any]] = field(default_factory=list)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


_SECTION_KEYS = ("round_intensities", "roi_threshold", "outlier_sigma", "revert")


def ibsi_settings(params: Mapping[str, Any]) -> IbsiSettings:
    """The IBSI processing a parameter dict asks for: pyradiomics' settings, with the ``ibsi`` section over them.

    From pyradiomics' ``setting``: ``resampledPixelSpacing``, ``interpolator``, ``padDistance`` (widened to the
    reach of the widest IBSI filter, :func:`~harmony.extraction.ibsi_image_types.filter_reach_voxels`) and
    ``resegmentRange`` with ``resegmentMode`` (``absolute`` is a range, ``sigma`` an outlier window). The ``ibsi``
    section adds ``round_intensities`` (default ``"auto"``), ``roi_threshold`` (0.5), ``outlier_sigma`` (an
    outlier window combined with an absolute ``resegmentRange``) and ``revert`` (one step done pyradiomics' way).

    Parameters
    ----------
    params : mapping
        pyradiomics parameters with an ``ibsi`` section.

    Returns
    -------
    IbsiSettings

    Raises
    ------
    ConfigError
        An unknown key in the ``ibsi`` section, an interpolator IBSI mode cannot run, a relative re-segmentation,
        or two outlier windows.

    Examples
    --------
    >>> s = ibsi_settings({"setting": {"resegmentRange": [-1000, 400]}, "ibsi": {"outlier_sigma": 3}})
    >>> s.resegment_range, s.outlier_sigma
    ((-1000.0, 400.0), 3.0)
    """
    section = dict(params.get(IBSI_SECTION) or {})
    unknown = sorted(set(section) - set(_SECTION_KEYS))
    if unknown:
        raise ConfigError(f"{IBSI_SECTION}: unknown key {unknown[0]!r} (known: {', '.join(_SECTION_KEYS)})")
    setting = params.get("setting") or {}
    spacing = setting.get("resampledPixelSpacing")
    interpolator = setting.get("interpolator", "sitkBSpline")
    if isinstance(interpolator, int):
        names = {getattr(sitk, name): name for name in INTERPOLATION_ORDER}
        interpolator = names.get(interpolator, str(interpolator))
    if spacing is None:
        interpolator = "sitkLinear"  # unused
    reseg, mode = setting.get("resegmentRange"), setting.get("resegmentMode", "absolute")
    outlier = _optional_float(section.get("outlier_sigma"))
    revert = section.get("revert")
    value_range = None
    if reseg is not None:
        if mode == "absolute":
            value_range = (float(reseg[0]), float(reseg[1]) if len(reseg) > 1 else None)
        elif mode == "sigma":
            if outlier is not None:
                raise ConfigError(f"{IBSI_SECTION}.outlier_sigma: given twice (resegmentMode 'sigma' sets it too)")
            if len(reseg) != 2 or float(reseg[0]) != -float(reseg[1]):
                raise ConfigError(f"setting.resegmentRange: IBSI mode needs a symmetric sigma window [-k, k], "
                                  f"got {list(reseg)!r}")
            outlier = abs(float(reseg[1]))
        else:
            raise ConfigError(f"setting.resegmentMode: IBSI mode has no {mode!r} re-segmentation "
                              "(use 'absolute' or 'sigma')")
    return IbsiSettings(
        spacing_mm=None if spacing is None else tuple(float(s) for s in spacing),
        interpolator=interpolator,
        round_intensities=section.get("round_intensities", "auto"),
        roi_threshold=float(section.get("roi_threshold", 0.5)),
        resegment_range=value_range,
        outlier_sigma=outlier,
        pad_voxels=max(int(setting.get("padDistance", 5)),
                       0 if spacing is None else filter_reach_voxels(params.get("imageType"), spacing)),
        revert=revert,
    )


def _ibsi_grid(size: np.ndarray, spacing: np.ndarray, target: np.ndarray):
    """Per axis (x, y, z): new size ceil(n s / s'), step in input voxels s'/s, first sample's input index."""
    new_size = np.ceil(size * spacing / target - 1e-9).astype(int)
    step = target / spacing
    first = ((size - 1) - (new_size - 1) * step) / 2.0  # centres aligned
    return new_size, step, first


def _box(mask_arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lowest and highest numpy (z, y, x) index of the non-zero voxels, or None."""
    nonzero = np.nonzero(mask_arr)
    if not nonzero[0].size:
        return None
    return np.array([a.min() for a in nonzero]), np.array([a.max() for a in nonzero])


def _resample(array: np.ndarray, order: int, step: np.ndarray, first: np.ndarray, out_shape: tuple[int, ...]):
    from scipy import ndimage

    return ndimage.affine_transform(array, step, offset=first, output_shape=out_shape, order=order,
                                    mode="nearest", prefilter=order > 1)


def ibsi_preprocess(image: sitk.Image, mask: sitk.Image, *, spacing_mm: tuple[float, ...] | None = None,
                    interpolator: str = "sitkLinear", round_intensities: bool | str = "auto",
                    roi_threshold: float = 0.5, resegment_range: tuple[float | None, float | None] | None = None,
                    outlier_sigma: float | None = None, label: int = 1,
                    pad_voxels: int | None = None, revert: str | None = None) -> Preprocessed:
    """IBSI 1 image processing: interpolation, rounding, ROI interpolation and re-segmentation.

    The steps follow the IBSI 1 reference manual (section 2): the image is interpolated on the IBSI grid (grid
    centres of the input and output aligned, ``ceil(n * s / s')`` voxels along each axis) with spline order 0, 1
    or 3 and nearest-value extrapolation; interpolated intensities are rounded when ``round_intensities`` says
    so; the ROI (voxels equal to ``label``) is interpolated linearly on the same grid and kept where it is at
    least ``roi_threshold``; the intensity mask is the ROI restricted to ``resegment_range``, then to mean +-
    ``outlier_sigma`` standard deviations of what remains. Without ``spacing_mm`` the image and ROI are
    unchanged (no interpolation, no rounding).

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The case: one-component image, label mask on the same grid.
    spacing_mm : sequence of float, optional
        Target spacing (x, y, z) in mm; a 0 or None entry keeps that axis (e.g. ``(2, 2, 0)`` in-plane only).
    interpolator : str, default "sitkLinear"
        ``sitkNearestNeighbor``, ``sitkLinear`` or ``sitkBSpline`` (cubic B-spline).
    round_intensities : bool or "auto", default "auto"
        Round interpolated intensities to the nearest integer; ``"auto"``: when every input voxel is an integer.
    roi_threshold : float, default 0.5
        Partial-volume threshold of the interpolated ROI.
    resegment_range : (float or None, float or None), optional
        Keep intensities in ``[lower, upper]`` (``None``: open on that side).
    outlier_sigma : float, optional
        Then keep intensities within mean +- ``outlier_sigma`` standard deviations (population SD).
    label : int, default 1
        The ROI's label.
    pad_voxels : int, optional
        Interpolate only the ROI's box plus this many voxels of the IBSI grid (``None``: the whole grid). The grid
        stays the IBSI one, so voxels inside the box are unchanged.
    revert : str, optional
        Do one step pyradiomics' way (:data:`REVERTIBLE`: ``grid`` corner-anchored, ``roi`` nearest neighbour,
        ``round`` none, ``resegment`` the range only), for ablation studies.

    Returns
    -------
    Preprocessed
        ``image``, ``mask`` (morphological), ``intensity_mask``, the combined ``resegment_range`` and
        ``adjustments`` (one dict per step done).

    Raises
    ------
    ValueError
        The ROI is empty (before or after interpolation), the image and mask grids differ, or a setting is out of
        range.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> image = sitk.GetImageFromArray(np.arange(4 * 6 * 6, dtype=float).reshape(4, 6, 6))
    >>> mask = sitk.GetImageFromArray(np.pad(np.ones((2, 4, 4), np.uint8), 1))
    >>> out = ibsi_preprocess(image, mask, spacing_mm=(1.5, 1.5, 1.5), resegment_range=(0, 100))
    >>> out.image.GetSize(), [a["step"] for a in out.adjustments]
    ((4, 4, 3), ['interpolate', 'round', 'interpolate_roi', 'resegment'])
    """
    settings = IbsiSettings(None if spacing_mm is None else tuple(spacing_mm), interpolator, round_intensities,
                            roi_threshold, resegment_range, outlier_sigma, pad_voxels, revert)
    if image.GetNumberOfComponentsPerPixel() != 1 or mask.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("IBSI mode needs a one-component image and mask")
    if image.GetSize() != mask.GetSize() or not np.allclose(image.GetSpacing(), mask.GetSpacing()) \
            or not np.allclose(image.GetOrigin(), mask.GetOrigin(), atol=1e-3):
        raise ValueError(f"image and mask grids differ: size {image.GetSize()} vs {mask.GetSize()}, spacing "
                         f"{image.GetSpacing()} vs {mask.GetSpacing()}")
    adjustments: list[dict[str, Any]] = []
    roi = sitk.GetArrayViewFromImage(mask) == label
    if not roi.any():
        raise ValueError(f"label {label} not present in mask")
    spacing = np.array(image.GetSpacing(), float)
    target = spacing.copy() if settings.spacing_mm is None else \
        np.array([s if s else spacing[i] for i, s in enumerate(settings.spacing_mm)], float)
    if len(target) != len(spacing):
        raise ValueError(f"spacing_mm needs {len(spacing)} values, got {list(settings.spacing_mm)!r}")
    if settings.spacing_mm is None:  # the image itself, so that filters see what plain pyradiomics sees
        out_image, out_roi = image, np.array(roi)
    else:
        out_image, out_roi = _interpolate(image, roi, spacing, target, settings, adjustments)
    out_arr = sitk.GetArrayViewFromImage(out_image)
    intensity = out_roi.copy()
    combined = None
    if settings.resegment_range is not None or settings.outlier_sigma is not None:
        lower, upper = -math.inf, math.inf
        if settings.resegment_range is not None:
            lower = -math.inf if settings.resegment_range[0] is None else float(settings.resegment_range[0])
            upper = math.inf if settings.resegment_range[1] is None else float(settings.resegment_range[1])
        values = out_arr[intensity]
        kept = (values >= lower) & (values <= upper)
        record: dict[str, Any] = {"step": "resegment", "range": [lower, upper]}
        if settings.outlier_sigma is not None and not (settings.revert == "resegment" and
                                                        settings.resegment_range is not None):
            inside = values[kept]
            if not inside.size:
                raise ValueError(f"no ROI voxel within the re-segmentation range [{lower}, {upper}]")
            mean, sd = float(inside.mean()), float(inside.std())
            lower = max(lower, mean - settings.outlier_sigma * sd)
            upper = min(upper, mean + settings.outlier_sigma * sd)
            kept = (values >= lower) & (values <= upper)
            record.update(outlier_sigma=settings.outlier_sigma, mean=mean, sd=sd)
        intensity[intensity] = kept
        combined = (lower, upper)
        record.update(combined_range=[lower, upper], voxels_before=int(values.size), voxels_after=int(kept.sum()))
        adjustments.append(record)
    dtype = np.uint8 if label < 256 else np.uint32
    masks = []
    for arr in (out_roi, intensity):
        m = sitk.GetImageFromArray((arr * label).astype(dtype))
        m.CopyInformation(out_image)
        masks.append(m)
    return Preprocessed(out_image, masks[0], masks[1], combined, adjustments)


def _interpolate(image: sitk.Image, roi: np.ndarray, spacing: np.ndarray, target: np.ndarray,
                 settings: IbsiSettings, adjustments: list[dict[str, Any]]) -> tuple[sitk.Image, np.ndarray]:
    """The image and ROI on the IBSI grid (or the ROI's box of it), per :func:`ibsi_preprocess`."""
    size = np.array(image.GetSize())
    new_size, step, first = _ibsi_grid(size, spacing, target)
    if settings.revert == "grid":  # pyradiomics: the first voxel's corner on the input's first corner
        first = (step - 1) / 2.0
    lo_out, hi_out = np.zeros(len(size), int), new_size - 1  # (x, y, z) output index box
    if settings.pad_voxels is not None:
        b_lo, b_hi = _box(roi)
        b_lo, b_hi = b_lo[::-1], b_hi[::-1]
        # output voxels whose linear ROI value can be > 0 lie strictly within one input voxel of the box
        lo_out = np.maximum(np.floor((b_lo - 1 - first) / step).astype(int) + 1 - settings.pad_voxels, 0)
        hi_out = np.minimum(np.ceil((b_hi + 1 - first) / step).astype(int) - 1 + settings.pad_voxels, new_size - 1)
    order = INTERPOLATION_ORDER[settings.interpolator]
    margin = _SPLINE_MARGIN if order > 1 else 2
    start = first + lo_out * step  # input index of the first output sample
    in_lo = np.maximum(np.floor(start).astype(int) - margin, 0)
    in_hi = np.minimum(np.ceil(first + hi_out * step).astype(int) + margin, size - 1)
    crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(in_lo[::-1], in_hi[::-1]))  # numpy (z, y, x)
    out_shape = tuple(int(v) for v in (hi_out - lo_out + 1)[::-1])
    source = sitk.GetArrayViewFromImage(image)[crop].astype(np.float64)
    values = _resample(source, order, step[::-1], (start - in_lo)[::-1], out_shape)
    rounding = settings.round_intensities
    if rounding == "auto":
        rounding = bool(np.array_equal(source, np.round(source)))
    rounding = rounding and settings.revert != "round"
    adjustments.append({"step": "interpolate", "grid": "IBSI (centres aligned, ceil(n*s/s'))",
                        "interpolator": settings.interpolator, "size_in": size.tolist(), "size_out": new_size.tolist(),
                        "spacing_out_mm": target.tolist(), "box_out": [lo_out.tolist(), hi_out.tolist()]})
    if rounding:
        values = np.round(values)
        adjustments.append({"step": "round", "how": "nearest integer",
                            "why": "integer-valued input" if settings.round_intensities == "auto" else "configured"})
    roi_order = 0 if settings.revert == "roi" else 1
    roi_values = _resample(roi[crop].astype(np.float64), roi_order, step[::-1], (start - in_lo)[::-1], out_shape)
    out_roi = roi_values >= settings.roi_threshold - 1e-12
    if not out_roi.any():
        raise ValueError(f"the ROI vanishes when interpolated to {target.tolist()} mm "
                         f"(partial-volume threshold {settings.roi_threshold})")
    adjustments.append({"step": "interpolate_roi", "interpolator": "sitkLinear",
                        "threshold": settings.roi_threshold, "voxels_out": int(out_roi.sum())})
    out = sitk.GetImageFromArray(values)
    direction = np.array(image.GetDirection()).reshape(len(size), len(size))
    out.SetSpacing(tuple(float(v) for v in target))
    out.SetDirection(image.GetDirection())
    out.SetOrigin(tuple(float(v) for v in np.array(image.GetOrigin()) + direction @ (start * spacing)))
    return out, out_roi


def ibsi_adjustments(params: Mapping[str, Any]) -> list[str]:
    """What IBSI mode changes for these parameters, one sentence each (what a manifest records).

    Parameters
    ----------
    params : mapping
        pyradiomics parameters with an ``ibsi`` section.

    Returns
    -------
    list of str

    Examples
    --------
    >>> ibsi_adjustments({"setting": {"binWidth": 25, "resegmentRange": [-1000, 400]}, "ibsi": {}})[0]
    'range re-segmentation to [-1000.0, 400.0]'
    """
    s = ibsi_settings(params)
    setting = params.get("setting") or {}
    out = []
    if s.spacing_mm is not None:
        out += [f"interpolation to {list(s.spacing_mm)} mm on the IBSI grid (centres aligned, ceil(n*s/s') voxels) "
                f"with {s.interpolator}, nearest-value extrapolation",
                f"interpolated intensities rounded to integers: {s.round_intensities}",
                f"ROI interpolated linearly, kept where >= {s.roi_threshold}"]
    if s.resegment_range is not None:
        out.append(f"range re-segmentation to [{s.resegment_range[0]}, {s.resegment_range[1]}]")
    if s.outlier_sigma is not None:
        out.append(f"outlier re-segmentation to mean +- {s.outlier_sigma} SD"
                   + (" after the range" if s.resegment_range is not None else ""))
    if setting.get("binWidth") is not None or setting.get("binCount") is None:
        source = "the re-segmentation lower bound" if s.resegment_range is not None else "the ROI minimum"
        out.append(f"fixed-bin-size bins of the original image counted from {source}")
    if setting.get("voxelArrayShift", 0):
        out.append("voxelArrayShift set to 0 (IBSI energy is of the intensities themselves)")
    if setting.get("resegmentShape"):
        out.append("resegmentShape set to false (IBSI morphology uses the ROI before re-segmentation)")
    out += ["first-order Kurtosis reported as excess kurtosis (minus 3)",
            "PCA axis lengths with the N-1 covariance (times sqrt(N/(N-1)))",
            "deprecated SumVariance, Dissimilarity, GLDM GrayLevelNonUniformityNormalized and DependencePercentage "
            "computed from ClusterTendency, DifferenceAverage, first-order Uniformity and 1"]
    return out


def correct_features(features: Mapping[str, float], n_voxels: int,
                     wanted: set[str] | None = None) -> dict[str, float]:
    """pyradiomics' feature values converted to the IBSI definitions (names unchanged).

    ``*_firstorder_Kurtosis`` minus 3 (excess kurtosis); ``*_shape_{Major,Minor,Least}AxisLength`` times
    ``sqrt(N / (N - 1))`` (covariance with N-1); the features of :data:`DEPRECATED_EQUIVALENTS` copied from the
    feature they equal and GLDM DependencePercentage set to 1, for the image types where the source was computed.

    Parameters
    ----------
    features : mapping of str to float
        pyradiomics' features of one extraction.
    n_voxels : int
        Voxels of the morphological mask (the shape features' N).
    wanted : set of str, optional
        ``class_feature`` names of the deprecated features to add (default all four).

    Returns
    -------
    dict of str to float

    Examples
    --------
    >>> correct_features({"original_firstorder_Kurtosis": 5.0, "original_glcm_ClusterTendency": 2.0}, 10)
    {'original_firstorder_Kurtosis': 2.0, 'original_glcm_ClusterTendency': 2.0, 'original_glcm_SumVariance': 2.0}
    """
    out = dict(features)
    wanted = set(DEPRECATED_EQUIVALENTS) | set(_CONSTANT_DEPRECATED) if wanted is None else wanted
    factor = math.sqrt(n_voxels / (n_voxels - 1)) if n_voxels > 1 else math.nan
    image_types = set()
    for key, value in features.items():
        prefix, cls, name = key.rsplit("_", 2)
        image_types.add(prefix)
        if cls == "firstorder" and name == "Kurtosis":
            out[key] = value - 3.0
        elif cls == "shape" and name in _PCA_AXES:
            out[key] = value * factor
    for prefix in sorted(image_types):
        for target, source in DEPRECATED_EQUIVALENTS.items():
            if target in wanted and f"{prefix}_{source}" in features:
                out[f"{prefix}_{target}"] = float(features[f"{prefix}_{source}"])
        for target, value in _CONSTANT_DEPRECATED.items():
            if target in wanted and any(k.startswith(f"{prefix}_gldm_") for k in features):
                out[f"{prefix}_{target}"] = value
    return out


# -- fixed-bin-size bins from the lower bound --------------------------------------------------------------

_BINNING = threading.local()  # .lower: None (pyradiomics' own bins) or a dict {"bound": float or None}
_PATCHED = False


def _install_bin_edges() -> None:
    """Route pyradiomics' ``getBinEdges`` through one that counts bins from a lower bound when one is set.

    With no bound set (plain mode, other threads) the original function runs: plain extractions are unchanged.
    """
    global _PATCHED
    if _PATCHED:
        return
    from radiomics import imageoperations

    original = imageoperations.getBinEdges

    def getBinEdges(parameterValues, **kwargs):
        state = getattr(_BINNING, "lower", None)
        width = kwargs.get("binWidth", 25)
        if state is None or kwargs.get("binCount") is not None:
            return original(parameterValues, **kwargs)
        bound = state["bound"]
        lower = float(np.min(parameterValues)) if bound is None else bound
        top = float(np.max(parameterValues))
        n = max(math.floor((top - lower) / width) + 1, 1)
        return lower + width * np.arange(n + 1, dtype=float)  # IBSI: floor((x - lower) / w) + 1

    imageoperations.getBinEdges = getBinEdges
    _PATCHED = True


class bins_from_lower_bound:
    """Within this context (this thread), pyradiomics' fixed-bin-size bins start at ``bound``.

    IBSI fixed bin size: ``floor((x - lower) / w) + 1`` with ``lower`` the re-segmentation lower bound (or the ROI
    minimum when there is none: ``bound=None``). pyradiomics counts from the multiple of ``w`` below the ROI
    minimum instead. Fixed bin count is left to pyradiomics (it agrees with the IBSI).

    Parameters
    ----------
    bound : float or None
        The lower bound; ``None``: the minimum of the values being binned.

    Examples
    --------
    >>> from radiomics import imageoperations
    >>> with bins_from_lower_bound(-1000.0):
    ...     imageoperations.getBinEdges(np.array([-940.0, -900.0]), binWidth=25)[:3].tolist()
    [-1000.0, -975.0, -950.0]
    >>> imageoperations.getBinEdges(np.array([-940.0, -900.0]), binWidth=25)[:2].tolist()
    [-950.0, -925.0]
    """

    def __init__(self, bound: float | None) -> None:
        _install_bin_edges()
        self.bound = bound

    def __enter__(self) -> bins_from_lower_bound:
        self._previous = getattr(_BINNING, "lower", None)
        _BINNING.lower = {"bound": self.bound}
        return self

    def __exit__(self, *exc: object) -> None:
        _BINNING.lower = self._previous


# -- the extractor -----------------------------------------------------------------------------------------

def _wanted_deprecated(params: Mapping[str, Any]) -> set[str]:
    """Deprecated IBSI features to add: those listed, or all of an enabled class with no list (all features)."""
    classes = params.get("featureClass")
    wanted = set()
    for target in [*DEPRECATED_EQUIVALENTS, *_CONSTANT_DEPRECATED]:
        cls, name = target.split("_", 1)
        if classes is None or cls in classes and (not classes[cls] or name in classes[cls]):
            wanted.add(target)
    return wanted


def _pyradiomics_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The parameters pyradiomics gets in IBSI mode, and the features added only as sources (dropped after)."""
    out = {k: copy.deepcopy(v) for k, v in params.items() if k != IBSI_SECTION}
    setting = out.setdefault("setting", {})
    for key in ("resampledPixelSpacing", "resegmentRange", "resegmentMode"):
        setting.pop(key, None)
    setting["voxelArrayShift"] = 0
    setting["resegmentShape"] = False  # IBSI: morphology from the ROI as interpolated, never re-segmented
    wanted = _wanted_deprecated(params)
    classes = out.get("featureClass")
    extra: set[str] = set()
    if classes is not None:
        for target in wanted:
            source = DEPRECATED_EQUIVALENTS.get(target)
            if source is None:
                continue
            cls, name = source.split("_", 1)
            listed = classes.get(cls, None)
            if cls not in classes:
                classes[cls] = [name]
                extra.add(source)
            elif listed and name not in listed:
                classes[cls] = [*listed, name]
                extra.add(source)
    return out, extra


class IbsiExtractor:
    """A pyradiomics extractor in IBSI mode: :func:`ibsi_preprocess` before, :func:`correct_features` after.

    Wraps a ``RadiomicsFeatureExtractor`` built from its parameters (no resampling or re-segmentation
    of its own, ``voxelArrayShift`` 0, ``resegmentShape`` false, the sources of the deprecated features enabled). :meth:`execute` has
    pyradiomics' signature and returns its result dict with the IBSI corrections applied.

    Parameters
    ----------
    params : mapping
        pyradiomics parameters with an ``ibsi`` section (:func:`ibsi_settings`).
    make : callable
        Builds the pyradiomics extractor from a parameter dict (the adapter's ``make_extractor``).

    Examples
    --------
    >>> from harmony.extraction.adapter import make_extractor
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> p = {"setting": {"binWidth": 1, "minimumROIDimensions": 1}, "featureClass": {"firstorder": ["Kurtosis"]},
    ...      "ibsi": {}}
    >>> result = make_extractor(p).execute(*ibsi_digital_phantom())
    >>> round(float(result["original_firstorder_Kurtosis"]), 3)
    -0.355
    """

    def __init__(self, params: Mapping[str, Any], make) -> None:
        self.ibsi = ibsi_settings(params)
        inner, self.extra = _pyradiomics_params(params)
        self.inner = make(inner)
        self.wanted = _wanted_deprecated(params)
        setting = params.get("setting") or {}
        self.fixed_bin_size = setting.get("binCount") is None and self.ibsi.revert != "bins"
        self._lock = threading.Lock()

    # what callers read from a pyradiomics extractor
    @property
    def settings(self) -> dict[str, Any]:
        """The wrapped extractor's settings (what pyradiomics runs with)."""
        return self.inner.settings

    @property
    def enabledImagetypes(self) -> dict[str, Any]:
        """The wrapped extractor's image types."""
        return self.inner.enabledImagetypes

    @property
    def enabledFeatures(self) -> dict[str, Any]:
        """The wrapped extractor's feature classes."""
        return self.inner.enabledFeatures

    def preprocess(self, image: sitk.Image, mask: sitk.Image, label: int | None = None) -> Preprocessed:
        """:func:`ibsi_preprocess` with this extractor's settings.

        Parameters
        ----------
        image, mask : SimpleITK.Image
            The case.
        label : int, optional
            The mask label (default: the settings', else 1).

        Returns
        -------
        Preprocessed
        """
        s = self.ibsi
        label = int(label if label is not None else self.inner.settings.get("label", 1))
        return ibsi_preprocess(image, mask, spacing_mm=s.spacing_mm, interpolator=s.interpolator,
                               round_intensities=s.round_intensities, roi_threshold=s.roi_threshold,
                               resegment_range=s.resegment_range, outlier_sigma=s.outlier_sigma, label=label,
                               pad_voxels=s.pad_voxels if s.spacing_mm is not None else None, revert=s.revert)

    def bin_bound(self) -> float | None:
        """The fixed-bin-size lower bound: the range's lower end, or None (the ROI minimum).

        Returns
        -------
        float or None
        """
        reseg = self.ibsi.resegment_range
        return None if reseg is None or reseg[0] is None else float(reseg[0])

    def settings_for(self, preprocessed: Preprocessed, settings: Mapping[str, Any]) -> dict[str, Any]:
        """pyradiomics settings of one case: the combined re-segmentation as an absolute range.

        Parameters
        ----------
        preprocessed : Preprocessed
            The case after :meth:`preprocess`.
        settings : mapping
            pyradiomics settings.

        Returns
        -------
        dict
        """
        out = dict(settings)
        if preprocessed.resegment_range is not None:
            out["resegmentRange"] = list(preprocessed.resegment_range)
            out["resegmentMode"] = "absolute"
        return out

    def compute_features(self, image, mask, image_type_name: str, **kwargs):
        """pyradiomics' ``computeFeatures``, with IBSI fixed-bin-size numbering on the original image.

        Parameters
        ----------
        image, mask : SimpleITK.Image
            The (cropped) image and mask of one image type.
        image_type_name : str
            pyradiomics' image type name (``original``, ``log-sigma-1-0-mm-3D``, ...).
        **kwargs
            Its settings.

        Returns
        -------
        dict
            pyradiomics' features of the enabled classes.
        """
        return self._compute_with(self.inner.computeFeatures, image, mask, image_type_name, **kwargs)

    def _compute_with(self, compute, image, mask, image_type_name, **kwargs):
        if image_type_name == "original" and self.fixed_bin_size:
            with bins_from_lower_bound(self.bin_bound()):
                return compute(image, mask, image_type_name, **kwargs)
        return compute(image, mask, image_type_name, **kwargs)

    def computeShape(self, *args, **kwargs):
        """pyradiomics' ``computeShape``.

        Parameters
        ----------
        *args, **kwargs
            pyradiomics' arguments (image, mask, bounding box, settings).

        Returns
        -------
        dict
        """
        return self.inner.computeShape(*args, **kwargs)

    def finish(self, features: Mapping[str, Any], mask: sitk.Image, label: int) -> dict[str, Any]:
        """Corrected outputs (:func:`correct_features`), without the features enabled only as sources.

        Parameters
        ----------
        features : mapping
            pyradiomics' result (features and diagnostics).
        mask : SimpleITK.Image
            The morphological mask (its voxel count is the PCA's N).
        label : int
            The mask label.

        Returns
        -------
        dict
        """
        n = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask) == label))
        values = {k: v for k, v in features.items() if not k.startswith("diagnostics_")}
        corrected = correct_features(values, n, self.wanted)
        out = {k: v for k, v in features.items() if k.startswith("diagnostics_")}
        out.update((k, v) for k, v in corrected.items() if k.split("_", 1)[1] not in self.extra)
        return out

    def execute(self, imageFilepath, maskFilepath, label=None, label_channel=None, voxelBased=False):
        """IBSI-mode ``execute``: preprocess, pyradiomics' ``execute`` on the result, corrected outputs.

        Parameters
        ----------
        imageFilepath, maskFilepath : SimpleITK.Image or path
            The case.
        label : int, optional
            The mask label (default: the settings', else 1).
        label_channel : int, optional
            Passed to pyradiomics.
        voxelBased : bool, default False
            Not supported in IBSI mode.

        Returns
        -------
        dict
            pyradiomics' result, with the IBSI corrections (:func:`correct_features`).

        Raises
        ------
        ConfigError
            Voxel-based extraction was asked for.
        ValueError
            The case is refused (empty ROI, by pyradiomics or by :func:`ibsi_preprocess`).
        """
        if voxelBased:
            raise ConfigError("IBSI mode does not support voxel-based extraction")
        image, mask = as_image(imageFilepath, "image"), as_image(maskFilepath, "mask")
        label = int(label if label is not None else self.inner.settings.get("label", 1))
        pre = self.preprocess(image, mask, label)
        with self._lock:
            saved = self.inner.settings
            self.inner.settings = self.settings_for(pre, saved)
            self.inner.computeFeatures = functools.partial(self._compute_with, self.inner.computeFeatures)
            try:
                result = self.inner.execute(pre.image, pre.mask, label=label, label_channel=label_channel)
            finally:
                self.inner.settings = saved
                del self.inner.computeFeatures  # the class's method again
        return self.finish(result, pre.mask, label)
