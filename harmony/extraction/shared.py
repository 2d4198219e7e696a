"""Work sharing: several mask/settings variants of one image, each filtered image computed once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.extraction.adapter import (
    _cached_extractor,
    _radiomics_logging,
    _settings_for,
    split_result,
)
from harmony.extraction.ibsi import IbsiExtractor
from harmony.extraction.params import canonical_params
from harmony.extraction.recursive_log import _log_crops

__all__ = ["Part", "SharedExtraction", "extraction_parts"]

logger = logging.getLogger(__name__)


# -- work sharing: several mask/settings variants of one image -----------------------------------------
#
# ``RadiomicsFeatureExtractor.execute`` applies every filter to the whole image once per call. For variants
# that share an image and differ only in their mask or feature settings, :class:`SharedExtraction` runs
# execute's steps itself: each filtered image is computed once, for LoG pass by pass on the lines through the
# box (:func:`~harmony.extraction.recursive_log._log_crops`), for the wavelet on the part of the image its taps
# reach (:func:`_wavelet_crops`), and cropped to the
# union bounding box of the masks, where every mask check, shape and feature computation happens. Cropping to
# a box holding every labelled voxel changes no value (the feature classes see the same voxels and spacing).

#: Settings the image filters never read: variants that differ only in these share the filtered images.
_FILTER_BLIND_SETTINGS = frozenset({
    "binWidth", "binCount", "distances", "symmetricalGLCM", "weightingNorm", "gldm_a", "voxelArrayShift",
    "minimumROIDimensions", "minimumROISize", "label", "additionalInfo", "enableCExtensions",
    "resegmentRange", "resegmentMode", "resegmentShape", "padDistance", "geometryTolerance", "correctMask",
    "normalize", "normalizeScale", "removeOutliers",  # applied once, before the filters, and keyed separately
})


#: Settings of loadImage's intensity normalization, applied to the whole image before anything else.
_NORMALIZE_SETTINGS = ("normalize", "normalizeScale", "removeOutliers")
#: Image types whose generator reads the mask: their filtered image cannot be shared between masks.
_MASK_DEPENDENT_IMAGE_TYPES = frozenset({"LBP3D"})
#: A part of an extraction: an image type, and for LoG one sigma (each sigma is its own filter run).
Part = tuple[str, float | None]


def _variant_parts(extractor, settings: Mapping[str, Any]) -> list[tuple[Part, dict[str, Any]]]:
    """Execute's image types in its order, LoG split by sigma, each with the settings its generator gets."""
    parts = []
    for image_type, custom in extractor.enabledImagetypes.items():
        args = {**settings, **(custom or {})}
        if image_type == "LoG":
            parts += [(("LoG", float(s)), {**args, "sigma": [s]}) for s in args.get("sigma", [])]
        else:
            parts.append(((image_type, None), args))
    return parts


def _can_share(extractor, image: sitk.Image, mask: sitk.Image) -> bool:
    """Whether execute's result for this variant can be reproduced from shared, cropped images.

    Not when loadImage resamples or pre-crops (the image then depends on the mask), when a filter reads the
    mask, or when the mask is a vector image or its grid is not exactly the image's (pyradiomics' geometry
    tolerance and mask correction then apply): those variants run through plain ``execute``.
    """
    s = extractor.settings
    if isinstance(extractor, IbsiExtractor) and extractor.ibsi.spacing_mm is not None:  # IBSI interpolation
        return False
    if (s.get("resampledPixelSpacing") is not None and s.get("interpolator") is not None) or s.get("preCrop"):
        return False
    if _MASK_DEPENDENT_IMAGE_TYPES & set(extractor.enabledImagetypes):
        return False
    if mask.GetNumberOfComponentsPerPixel() != 1:
        return False
    return (image.GetSize() == mask.GetSize() and image.GetSpacing() == mask.GetSpacing()
            and image.GetOrigin() == mask.GetOrigin() and image.GetDirection() == mask.GetDirection())


def _nonzero_box(mask: sitk.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """Lowest and highest (x, y, z) index of the mask's non-zero voxels, or None when it has none."""
    arr = sitk.GetArrayViewFromImage(mask)
    lower, upper = [], []
    for axis in range(arr.ndim):
        other = tuple(a for a in range(arr.ndim) if a != axis)
        hits = np.flatnonzero(arr.any(axis=other))
        if not hits.size:
            return None
        lower.append(hits[0])
        upper.append(hits[-1])
    return np.array(lower[::-1]), np.array(upper[::-1])  # numpy is (z, y, x), SimpleITK (x, y, z)


def _crop(image: sitk.Image, box: tuple[np.ndarray, np.ndarray] | None) -> sitk.Image:
    if box is None:
        return image
    lower, upper = box
    crop = sitk.CropImageFilter()
    crop.SetLowerBoundaryCropSize([int(v) for v in lower])
    crop.SetUpperBoundaryCropSize([int(v) for v in np.array(image.GetSize()) - upper - 1])
    return crop.Execute(image)


class SharedExtraction:
    """Extract mask/settings variants of one image, computing each filtered image once.

    :meth:`run` returns, per variant, the same features as ``execute(image, masks[i], label)`` with
    ``params[i]`` (diagnostics excluded), bit for bit, or the exception that extraction raised. Variants
    whose settings make sharing unsafe (resampling, ``preCrop``, LBP3D, a mask off the image's grid) run
    through plain ``execute``.

    Parameters
    ----------
    image : SimpleITK.Image
        The image every variant shares.
    masks : list of SimpleITK.Image
        Variant i's mask.
    params : list of mapping
        Variant i's pyradiomics parameters, one per mask.
    label : int, optional
        The mask label (default: each variant's parameters', else 1).

    Raises
    ------
    ValueError
        ``masks`` and ``params`` differ in length.
    ConfigError
        pyradiomics rejects a parameter dict.

    Examples
    --------
    >>> from harmony.extraction import merge_params
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> p = {"setting": {"binWidth": 1, "minimumROIDimensions": 1}, "featureClass": {"firstorder": ["Mean"]}}
    >>> shared = SharedExtraction(image, [mask, mask], [p, merge_params(p, {"setting": {"binWidth": 2}})])
    >>> [round(r["original_firstorder_Mean"], 4) for r in shared.run()]
    [2.1486, 2.1486]
    """

    def __init__(self, image: sitk.Image, masks: list[sitk.Image], params: list[Mapping[str, Any]],
                 label: int | None = None) -> None:
        if len(masks) != len(params):
            raise ValueError(f"need one parameter dict per mask, got {len(masks)} masks and {len(params)} dicts")
        self.image = image
        self.label = label
        self.extractors = [_cached_extractor(p) for p in params]
        self.settings = [_settings_for(e, label) for e in self.extractors]
        self.shared = [_can_share(e, image, m) for e, m in zip(self.extractors, masks)]
        boxes = [b for m, ok in zip(masks, self.shared) if ok and (b := _nonzero_box(m)) is not None]
        # the union of the masks' boxes: no labelled voxel of any variant lies outside it
        self.box = (np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)) if boxes else None
        self.masks = [_crop(m, self.box) if ok else m for m, ok in zip(masks, self.shared)]  # whole-grid ones go
        if not all(self.shared):
            logger.info("%d of %d variants run through plain execute (resampling, preCrop, LBP3D or a mask "
                        "off the image grid)", self.shared.count(False), len(masks))
        self._images: dict[tuple[str, bool], sitk.Image] = {}  # normalized image (whole or cropped)
        self._filtered: dict[str, list[tuple[sitk.Image, str]]] = {}  # cropped filter output, by filter settings

    def run(self, parts: list[Part] | None = None, shape: bool = True) -> list[dict[str, float] | Exception]:
        """Features of each variant for ``parts`` (default all), plus shape when ``shape``.

        Variants that cannot share run whole (all parts) with ``shape`` and are empty otherwise, so that
        results of several calls covering all parts, one of them with ``shape``, add up to one extraction.

        Parameters
        ----------
        parts : list of Part, optional
            The image types (and LoG sigmas) to compute (:func:`extraction_parts`); default all.
        shape : bool, default True
            Compute the shape features too.

        Returns
        -------
        list of (dict of str to float, or Exception)
            Per variant, its features, or the exception its extraction raised.
        """
        _radiomics_logging()
        wanted = None if parts is None else set(parts)
        results: list[dict[str, float] | Exception] = []
        for i in range(len(self.masks)):
            try:
                if self.shared[i]:
                    results.append(self._run_shared(i, wanted, shape))
                elif shape:
                    extraction = split_result(self.extractors[i].execute(self.image, self.masks[i], label=self.label))
                    results.append(extraction.features)
                else:
                    results.append({})
            except Exception as exc:  # one variant's failure (e.g. an empty ROI) must not stop the others
                results.append(exc)
        return results

    def _run_shared(self, i: int, wanted: set[Part] | None, shape: bool) -> dict[str, float]:
        from radiomics import imageoperations as ops

        extractor, settings = self.extractors[i], self.settings[i]
        image = self._normalized(settings, cropped=True)
        ibsi = isinstance(extractor, IbsiExtractor)
        if ibsi:  # IBSI mode without interpolation: its combined re-segmentation as pyradiomics' absolute range
            settings = extractor.settings_for(extractor.preprocess(image, self.masks[i], settings.get("label")),
                                              settings)
        # execute's steps 1-6 on the cropped grid (loadImage's mask handling, checkMask, resegmentation)
        mask = ops.getMask(self.masks[i], **settings)
        bounding_box, _ = ops.checkMask(image, mask, **settings)
        resegmented = None
        if settings.get("resegmentRange") is not None:
            resegmented = ops.resegmentMask(image, mask, **settings)
            bounding_box, _ = ops.checkMask(image, resegmented, **settings)
        features: dict[str, Any] = {}
        if shape:
            shape_mask = resegmented if resegmented is not None and settings.get("resegmentShape") else mask
            features.update(extractor.computeShape(image, shape_mask, bounding_box, **settings))
        morphological = mask
        mask = resegmented if resegmented is not None else mask
        compute = extractor.compute_features if ibsi else extractor.computeFeatures
        for part, args in _variant_parts(extractor, settings):
            if wanted is not None and part not in wanted:
                continue
            for filtered, name in self._filter(part, args):
                cropped_image, cropped_mask = ops.cropToTumorMask(filtered, mask, bounding_box, padDistance=0)
                features.update(compute(cropped_image, cropped_mask, name, **args))
        if ibsi:
            features = extractor.finish(features, morphological, settings.get("label", 1))
        return {key: float(value) for key, value in features.items()}

    def _normalized(self, settings: Mapping[str, Any], cropped: bool = False) -> sitk.Image:
        """The whole image normalized as loadImage does for ``settings`` (or its crop to the box); cached."""
        from radiomics import imageoperations as ops

        key = (canonical_params({k: settings.get(k) for k in _NORMALIZE_SETTINGS}), cropped)
        if key not in self._images:
            if cropped:
                self._images[key] = _crop(self._normalized(settings), self.box)
            else:
                self._images[key] = ops.normalizeImage(self.image, **settings) if settings.get("normalize") \
                    else self.image
        return self._images[key]

    def _filter(self, part: Part, args: Mapping[str, Any]) -> list[tuple[sitk.Image, str]]:
        """The generator's images for ``part`` on the whole (normalized) image, cropped to the box; cached."""
        from radiomics import imageoperations as ops

        key = canonical_params({"part": part, "normalize": {k: args.get(k) for k in _NORMALIZE_SETTINGS},
                                "args": {k: v for k, v in args.items() if k not in _FILTER_BLIND_SETTINGS}})
        if key not in self._filtered:
            if part[0] == "Wavelet":
                self._filtered[key] = _wavelet_crops(self._normalized(args), self.box, **args)
            elif part[0] == "LoG" and (log := _log_crops(self._normalized(args), self.box, args["sigma"][0])):
                self._filtered[key] = log
            else:
                generator = getattr(ops, f"get{part[0]}Image")(self._normalized(args), None, **args)
                self._filtered[key] = [(_crop(filtered, self.box), name) for filtered, name, _ in generator]
        return self._filtered[key]


def _wavelet_crops(image: sitk.Image, box: tuple[np.ndarray, np.ndarray] | None,
                   **kwargs: Any) -> list[tuple[sitk.Image, str]]:
    """pyradiomics' ``getWaveletImage`` (its ``_swt3`` step by step), each output cropped to ``box``.

    Values, names and order are pyradiomics' own, computed on less of the image. pyradiomics runs
    ``level`` (after ``start_level``) one-level stationary transforms, each a convolution of ``dec_len`` taps
    along every axis. An output voxel therefore reads input voxels at most ``(dec_len + 1) * iterations``
    away; where a box grown by that margin stays inside the image along an axis, the transform runs on the
    grown box alone (pywt sums the same products in the same order away from an array's ends, so the values
    are bit-identical), else on the whole axis with pyradiomics' wrap padding. The outputs are cropped as
    arrays, before they become images.
    """
    import pywt

    axes = list(range(image.GetDimension() - 1, -1, -1))
    if kwargs.get("force2D", False):
        axes.remove(kwargs.get("force2Ddimension", 0))
    axes = tuple(axes)
    wavelet = kwargs.get("wavelet", "coif1")
    wavelet = wavelet if isinstance(wavelet, pywt.Wavelet) else pywt.Wavelet(wavelet)
    start_level, level = kwargs.get("start_level", 0), kwargs.get("level", 1)
    matrix = sitk.GetArrayViewFromImage(image)
    lower, upper = (np.zeros(matrix.ndim, int), np.array(matrix.shape) - 1) if box is None else \
        (box[0][::-1], box[1][::-1])  # (x, y, z) -> numpy's (z, y, x)
    margin = (wavelet.dec_len + 1) * (start_level + level) + 1
    source, pad, out = [], [], []
    for n, lo, hi in zip(matrix.shape, lower, upper):
        first, last = lo - margin, hi + margin + (hi - lo + 2 * margin + 1) % 2  # an even length, as swtn needs
        if box is not None and first >= 0 and last < n:
            source.append(slice(first, last + 1))
            pad.append((0, 0))
            out.append(slice(lo - first, hi - first + 1))
        else:  # pywt.swtn needs even sizes: pyradiomics wraps one slice on odd axes and cuts it off after
            source.append(slice(None))
            pad.append((0, n % 2))
            out.append(slice(lo, hi + 1))
    data = np.pad(matrix[tuple(source)], pad, "wrap")
    reference = _crop(image, box)

    def as_image(array: np.ndarray) -> sitk.Image:
        result = sitk.GetImageFromArray(np.ascontiguousarray(array[tuple(out)]))
        result.CopyInformation(reference)
        return result

    approximation = "a" * len(axes)
    for _ in range(start_level):
        data = pywt.swtn(data, wavelet, level=1, start_level=0, axes=axes)[0][approximation].copy()
    images = []
    for index in range(1, level + 1):
        decomposition = pywt.swtn(data, wavelet, level=1, start_level=0, axes=axes)[0]
        data = decomposition[approximation].copy()
        prefix = "wavelet-" if index == 1 else f"wavelet{index}-"
        images += [(as_image(array), prefix + name.replace("a", "L").replace("d", "H"))
                   for name, array in decomposition.items() if name != approximation]
    prefix = "wavelet-" if level == 1 else f"wavelet{level}-"
    images.append((as_image(data), prefix + "L" * len(axes)))
    return images


def extraction_parts(params: list[Mapping[str, Any]], label: int | None = None) -> list[Part]:
    """Every part the parameter dicts need, in execute's order; :meth:`SharedExtraction.run` takes subsets.

    Parameters
    ----------
    params : list of mapping
        pyradiomics parameter dicts.
    label : int, optional
        The mask label.

    Returns
    -------
    list of Part
        ``(image type, LoG sigma or None)``, without repeats.

    Examples
    --------
    >>> extraction_parts([{"imageType": {"Original": {}, "LoG": {"sigma": [1, 2]}}}])
    [('Original', None), ('LoG', 1.0), ('LoG', 2.0)]
    """
    seen: dict[Part, None] = {}
    for p in params:
        extractor = _cached_extractor(p)
        seen.update((part, None) for part, _ in _variant_parts(extractor, _settings_for(extractor, label)))
    return list(seen)
