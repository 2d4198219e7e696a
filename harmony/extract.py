"""The pyradiomics adapter: parameters in, tidy feature rows out.

This is the only module that knows pyradiomics' parameter layout, its result keys and its loggers.
Parameters are always passed to pyradiomics as a dict so that its own schema validates them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from harmony import schema
from harmony.errors import CaseError, ConfigError

logger = logging.getLogger(__name__)

#: The top-level keys of a pyradiomics parameter file.
PARAM_SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting")


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pyradiomics parameter file (.yaml/.yml with ``safe_load``, .toml or .json) into a dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameter file not found") from None
    try:
        if suffix in (".yaml", ".yml"):
            params = yaml.safe_load(text)
        elif suffix == ".toml":
            params = tomllib.loads(text)
        elif suffix == ".json":
            params = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown parameter file type {suffix!r} (use .yaml, .yml, .toml or .json)")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse parameters ({exc})") from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: parameters must be a mapping, got {type(params).__name__}")
    return params


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two parameter dicts section by section (``override`` wins).

    >>> merge_params({"setting": {"binWidth": 25, "label": 1}}, {"setting": {"binWidth": 10}})
    {'setting': {'binWidth': 10, 'label': 1}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _radiomics_logging() -> None:
    """pyradiomics adds its own stderr handler at import; send its records through ``logging`` instead.

    Its INFO and WARNING chatter (one line per feature class and case) is kept at DEBUG verbosity only.
    """
    import radiomics

    log = logging.getLogger("radiomics")
    if getattr(log, "_harmony_configured", False):
        return
    # a NullHandler, not none: pyradiomics hands handlers[0] to pykwalify when the root has no handler
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = True
    log.setLevel(logging.DEBUG if logging.getLogger("harmony").isEnabledFor(logging.DEBUG) else logging.ERROR)
    log._harmony_configured = True
    radiomics.logger = log


@contextlib.contextmanager
def _quiet_pykwalify() -> Iterator[None]:
    """pykwalify logs every validation error at ERROR level before raising; we raise our own message."""
    log = logging.getLogger("pykwalify")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def _schema_messages(exc: Exception) -> str:
    text = getattr(exc, "msg", None) or str(exc)
    lines = [ln.strip()[2:].rstrip(".") for ln in str(text).splitlines() if ln.strip().startswith("- ")]
    return "; ".join(lines) if lines else str(text)


def make_extractor(params: Mapping[str, Any], source: str = "<params>"):
    """A ``RadiomicsFeatureExtractor`` built from a parameter dict, validated by pyradiomics' schema.

    A misspelt top-level section (which the schema would not see as an error) is refused too.
    """
    from pykwalify.errors import PyKwalifyException
    from radiomics import featureextractor

    _radiomics_logging()
    params = copy.deepcopy(dict(params))
    unknown = [k for k in params if k not in PARAM_SECTIONS]
    if unknown:
        raise ConfigError(f"{source}: unknown pyradiomics parameter section {unknown[0]!r} "
                          f"(known: {', '.join(PARAM_SECTIONS)})")
    try:
        with _quiet_pykwalify():
            extractor = featureextractor.RadiomicsFeatureExtractor(params)
    except PyKwalifyException as exc:
        raise ConfigError(f"{source}: pyradiomics rejected the parameters: {_schema_messages(exc)}") from None
    except ValueError as exc:  # unknown image type or feature class
        raise ConfigError(f"{source}: pyradiomics rejected the parameters: {exc}") from None
    return extractor


@dataclass(frozen=True)
class Extraction:
    """One extraction's result: feature values (float64) and diagnostics (JSON-able)."""

    features: dict[str, float]
    diagnostics: dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else value.item()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def split_result(result: Mapping[str, Any]) -> Extraction:
    """Separate pyradiomics' ``execute`` output into float features and diagnostics."""
    features: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    for key, value in result.items():
        if key.startswith(schema.DIAGNOSTICS_PREFIX):
            diagnostics[key] = _jsonable(value)
        else:
            features[key] = float(value)
    return Extraction(features, diagnostics)


def source_diagnostics(image: sitk.Image, mask: sitk.Image, params: Mapping[str, Any],
                       label: int | None = None) -> dict[str, Any]:
    """The ``diagnostics_Image-original_*`` and ``diagnostics_Mask-original_*`` entries that ``execute`` reports
    for this image and mask (pyradiomics' own ``GeneralInfo``), JSON-able.

    The versions and configuration entries are left out: a manifest records them once per run.

    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> info = source_diagnostics(*ibsi_digital_phantom(), {"setting": {"label": 1}})
    >>> info["diagnostics_Mask-original_VoxelNum"], info["diagnostics_Image-original_Size"]
    (74, [5, 4, 4])
    """
    from radiomics import generalinfo
    from radiomics import imageoperations as ops

    settings = _settings_for(_cached_extractor(params), label)
    info = generalinfo.GeneralInfo()
    info.addImageElements(image)
    # getMask's cast, without its label check over the whole grid (the extraction checks the label)
    vector = "vector" in mask.GetPixelIDTypeAsString().lower()
    mask = ops.getMask(mask, **settings) if vector else sitk.Cast(mask, sitk.sitkUInt32)
    info.addMaskElements(None, mask, settings.get("label", 1))
    return {key: _jsonable(value) for key, value in info.getGeneralInfo().items()
            if key.startswith((f"{schema.DIAGNOSTICS_PREFIX}Image-", f"{schema.DIAGNOSTICS_PREFIX}Mask-"))}


def read_image(path: str | os.PathLike, what: str = "image", case_id: str | None = None) -> sitk.Image:
    """Read an image with SimpleITK; a missing or unreadable file raises CaseError naming it."""
    who = f"case {case_id!r}: " if case_id is not None else ""
    path = Path(path)
    if not path.is_file():
        raise CaseError(f"{who}{what} file not found: {path}")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"{who}{what} file is unreadable: {path} ({first})") from None


def _as_image(obj: sitk.Image | str | os.PathLike, what: str) -> sitk.Image:
    return obj if isinstance(obj, sitk.Image) else read_image(obj, what)


def extract(image: sitk.Image | str | os.PathLike, mask: sitk.Image | str | os.PathLike,
            params: Mapping[str, Any] | Any, label: int | None = None) -> Extraction:
    """Extract one case with pyradiomics' ``execute``.

    ``params`` is a parameter dict or an extractor from :func:`make_extractor` (reuse one across cases).
    """
    extractor = make_extractor(params) if isinstance(params, Mapping) else params
    result = extractor.execute(_as_image(image, "image"), _as_image(mask, "mask"), label=label)
    return split_result(result)


def feature_rows(features: Mapping[str, float], *, case_id: str, site: str,
                 variant_id: str = schema.ORIGINAL, repeat: int = 0) -> pd.DataFrame:
    """Tidy rows of the features table for one extraction.

    >>> feature_rows({"original_firstorder_Mean": 2.5}, case_id="c1", site="A").to_dict("records")
    [{'case_id': 'c1', 'site': 'A', 'variant_id': 'original', 'repeat': 0, 'feature': 'original_firstorder_Mean', 'value': 2.5}]
    """
    n = len(features)
    return pd.DataFrame({
        schema.CASE_ID: [case_id] * n,
        schema.SITE: [site] * n,
        schema.VARIANT_ID: [variant_id] * n,
        schema.REPEAT: np.full(n, repeat, dtype="int64"),
        schema.FEATURE: list(features.keys()),
        schema.VALUE: np.fromiter(features.values(), dtype="float64", count=n),
    })


def feature_class(feature: str) -> str:
    """The pyradiomics feature class of a feature key (``original_glcm_Contrast`` -> ``glcm``).

    >>> feature_class("wavelet-LLH_glszm_ZonePercentage")
    'glszm'
    """
    parts = feature.split("_")
    if len(parts) < 3:
        raise ValueError(f"not a pyradiomics feature key: {feature!r}")
    return parts[-2]


def image_type(feature: str) -> str:
    """The image type a feature was computed on (``log-sigma-1-0-mm-3D_glcm_Idm`` -> ``log-sigma-1-0-mm-3D``).

    >>> image_type("original_shape_Sphericity")
    'original'
    """
    return feature.rsplit("_", 2)[0]


# -- work sharing: several mask/settings variants of one image -----------------------------------------
#
# ``RadiomicsFeatureExtractor.execute`` applies every filter to the whole image once per call. For variants
# that share an image and differ only in their mask or feature settings, :class:`SharedExtraction` runs
# execute's steps itself: each filtered image is computed once, on the whole image (LoG is recursive along
# whole lines), or for the wavelet on the part of it its taps reach (:func:`_wavelet_crops`), and cropped to the
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


def _settings_for(extractor, label: int | None) -> dict[str, Any]:
    settings = extractor.settings.copy()
    if label is not None:
        settings["label"] = label
    return settings


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

    ``image`` is shared by all variants; ``masks[i]`` and ``params[i]`` (parameter dicts) are variant i's.
    :meth:`run` returns, per variant, the same features as ``execute(image, masks[i], label)`` with
    ``params[i]`` (diagnostics excluded), or the exception that extraction raised. Variants whose settings
    make sharing unsafe (see :func:`_can_share`) run through plain ``execute``.

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
        mask = resegmented if resegmented is not None else mask
        for part, args in _variant_parts(extractor, settings):
            if wanted is not None and part not in wanted:
                continue
            for filtered, name in self._filter(part, args):
                cropped_image, cropped_mask = ops.cropToTumorMask(filtered, mask, bounding_box, padDistance=0)
                features.update(extractor.computeFeatures(cropped_image, cropped_mask, name, **args))
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

    >>> extraction_parts([{"imageType": {"Original": {}, "LoG": {"sigma": [1, 2]}}}])
    [('Original', None), ('LoG', 1.0), ('LoG', 2.0)]
    """
    seen: dict[Part, None] = {}
    for p in params:
        extractor = _cached_extractor(p)
        seen.update((part, None) for part, _ in _variant_parts(extractor, _settings_for(extractor, label)))
    return list(seen)


def canonical_params(obj: Any) -> str:
    """Key-sorted JSON of a parameter structure (tuples become lists), usable as a cache key.

    >>> canonical_params({"b": (1, 2), "a": None})
    '{"a":null,"b":[1,2]}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


_EXTRACTORS: dict[str, Any] = {}


def _cached_extractor(params: Mapping[str, Any]):
    """One extractor per distinct parameter dict and process (building one validates the schema: ~50 ms)."""
    key = canonical_params(params)
    if key not in _EXTRACTORS:
        extractor = make_extractor(params)
        extractor.settings["additionalInfo"] = False  # diagnostics are not features; they cost full-grid work
        _EXTRACTORS[key] = extractor
    return _EXTRACTORS[key]
