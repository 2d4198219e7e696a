"""The pyradiomics adapter: parameters in, tidy feature rows out.

This is the only module that knows pyradiomics' parameter layout, its result keys and its loggers.
Parameters are always passed to pyradiomics as a dict so that its own schema validates them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.core.images import as_image
from harmony.extraction.ibsi import IBSI_SECTION, IbsiExtractor
from harmony.extraction.ibsi_image_types import (
    IBSI_IMAGE_TYPES,
    register,
    split_image_types,
)
from harmony.extraction.params import (
    PARAM_SECTIONS,
    canonical_params,
    load_params,
    merge_params,
)

if TYPE_CHECKING:  # pandas is imported where it is used, so `harmony validate` does not load it
    import pandas as pd

__all__ = ["make_extractor", "Extraction", "split_result", "source_diagnostics", "extract", "feature_rows",
           "feature_class", "image_type", "extraction_params"]


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

    A misspelt top-level section (which the schema would not see as an error) is refused too. Building one
    costs about 50 ms: make it once and pass it to :func:`extract` for every case.

    Parameters
    ----------
    params : mapping
        pyradiomics parameters: any of the sections ``setting``, ``imageType``, ``featureClass``,
        ``voxelSetting`` (what a pyradiomics parameter file holds; :func:`load_params` reads one), and for
        IBSI mode an ``ibsi`` section (:func:`harmony.extraction.ibsi.ibsi_settings`). ``imageType`` may hold
        harmony's IBSI 2 filters ``LoG_IBSI`` and ``Wavelet_IBSI`` beside pyradiomics' own
        (:mod:`harmony.extraction.ibsi_image_types`).
    source : str, default "<params>"
        Where the parameters came from, for the messages.

    Returns
    -------
    radiomics.featureextractor.RadiomicsFeatureExtractor or IbsiExtractor
        An :class:`~harmony.extraction.ibsi.IbsiExtractor` (same interface) when ``params`` has an ``ibsi`` section.

    Raises
    ------
    ConfigError
        An unknown section, or parameters pyradiomics' schema rejects.

    Examples
    --------
    >>> extractor = make_extractor({"setting": {"binWidth": 25}, "featureClass": {"shape": []}})
    >>> extractor.settings["binWidth"], list(extractor.enabledFeatures)
    (25, ['shape'])
    >>> make_extractor({"settings": {"binWidth": 25}})
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: <params>: unknown pyradiomics parameter section 'settings' (known: ...)
    """
    from pykwalify.errors import PyKwalifyException
    from radiomics import featureextractor

    _radiomics_logging()
    params = copy.deepcopy(dict(params))
    if IBSI_SECTION in params:  # IBSI mode: harmony's steps around a plain extractor
        return IbsiExtractor(params, lambda inner: make_extractor(inner, source))
    unknown = [k for k in params if k not in PARAM_SECTIONS]
    if unknown:
        raise ConfigError(f"{source}: unknown pyradiomics parameter section {unknown[0]!r} "
                          f"(known: {', '.join(PARAM_SECTIONS)})")
    params, image_types = split_image_types(params, source)  # LoG_IBSI, Wavelet_IBSI: checked by harmony
    try:
        with _quiet_pykwalify():
            extractor = featureextractor.RadiomicsFeatureExtractor(params)
    except PyKwalifyException as exc:
        raise ConfigError(f"{source}: pyradiomics rejected the parameters: {_schema_messages(exc)}") from None
    except ValueError as exc:  # unknown image type or feature class
        raise ConfigError(f"{source}: pyradiomics rejected the parameters: {exc}") from None
    for name, spec in (image_types or {}).items():
        if spec is not None and (own := {k: v for k, v in spec.items() if k not in IBSI_IMAGE_TYPES[name]}):
            try:  # the pyradiomics settings of an IBSI image type
                with _quiet_pykwalify():
                    featureextractor.RadiomicsFeatureExtractor({"setting": own})
            except PyKwalifyException as exc:
                raise ConfigError(f"{source}: imageType.{name}: pyradiomics rejected its settings: "
                                  f"{_schema_messages(exc)}") from None
    if image_types is not None:
        register()
        extractor.enabledImagetypes = {name: extractor.enabledImagetypes[name] if spec is None else spec
                                       for name, spec in image_types.items()}
    return extractor


@dataclass(frozen=True)
class Extraction:
    """One extraction's result: feature values (float64) and diagnostics (JSON-able).

    Parameters
    ----------
    features : dict of str to float
        The feature values, keyed as pyradiomics names them (``original_firstorder_Mean``).
    diagnostics : dict
        pyradiomics' ``diagnostics_*`` entries (versions, settings, image and mask information).

    Examples
    --------
    >>> split_result({"diagnostics_Versions_PyRadiomics": "3.1", "original_shape_VoxelVolume": 8.0}).features
    {'original_shape_VoxelVolume': 8.0}
    """

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
    """Separate pyradiomics' ``execute`` output into float features and diagnostics.

    Parameters
    ----------
    result : mapping
        What ``RadiomicsFeatureExtractor.execute`` returns.

    Returns
    -------
    Extraction
        Keys starting with ``diagnostics_`` go to ``diagnostics`` (made JSON-able), the others to
        ``features`` as floats.

    Examples
    --------
    >>> import numpy as np
    >>> split_result({"diagnostics_Mask-original_VoxelNum": np.int64(74), "original_firstorder_Mean": 2.5})
    Extraction(features={'original_firstorder_Mean': 2.5}, diagnostics={'diagnostics_Mask-original_VoxelNum': 74})
    """
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
    """The image and mask diagnostics that pyradiomics' ``execute`` reports for a case, JSON-able.

    The ``diagnostics_Image-original_*`` and ``diagnostics_Mask-original_*`` entries, computed with
    pyradiomics' own ``GeneralInfo``. The versions and configuration entries are left out: a manifest
    records them once per run.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The case.
    params : mapping
        The pyradiomics parameters of the extraction.
    label : int, optional
        The mask label (default: the parameters', else 1).

    Returns
    -------
    dict
        The image and mask diagnostics, JSON-able.

    Examples
    --------
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> info = source_diagnostics(*ibsi_digital_phantom(), {"setting": {"label": 1}})
    >>> info["diagnostics_Mask-original_VoxelNum"], info["diagnostics_Image-original_Size"]
    (74, [5, 4, 4])
    """
    from radiomics import generalinfo
    from radiomics import imageoperations as ops

    settings = _settings_for(_cached_extractor(params), label)
    # getMask's cast, without its label check over the whole grid (the extraction checks the label)
    vector = "vector" in mask.GetPixelIDTypeAsString().lower()
    mask = ops.getMask(mask, **settings) if vector else sitk.Cast(mask, sitk.sitkUInt32)
    # GeneralInfo hashes the images it describes as "original" with sitk.Hash, 15x slower than hashlib's
    # sha1 of the same buffer (0.6 s of 0.8 s on a 512x512x48 CT): it describes them under another name
    info = generalinfo.GeneralInfo()
    info.addImageElements(image, prefix=_UNHASHED)
    info.addMaskElements(None, mask, settings.get("label", 1), prefix=_UNHASHED)
    described = info.getGeneralInfo()
    found: dict[str, Any] = {}
    for kind, source in (("Image", image), ("Mask", mask)):
        found[f"{schema.DIAGNOSTICS_PREFIX}{kind}-original_Hash"] = _sha1(source)
        if kind == "Image":
            found[f"{schema.DIAGNOSTICS_PREFIX}Image-original_Dimensionality"] = f"{image.GetDimension()}D"
        scratch = f"{schema.DIAGNOSTICS_PREFIX}{kind}-{_UNHASHED}_"
        found.update((f"{schema.DIAGNOSTICS_PREFIX}{kind}-original_{key.removeprefix(scratch)}", value)
                     for key, value in described.items() if key.startswith(scratch))
    return {key: _jsonable(value) for key, value in found.items()}


#: The name under which :func:`source_diagnostics` has GeneralInfo describe the original image and mask.
_UNHASHED = "unhashed"


def _sha1(image: sitk.Image) -> str:
    """``sitk.Hash(image)``: the sha1 of the image's buffer, in its memory order."""
    return hashlib.sha1(sitk.GetArrayViewFromImage(image)).hexdigest()


def extract(image: sitk.Image | str | os.PathLike, mask: sitk.Image | str | os.PathLike,
            params: Mapping[str, Any] | Any, label: int | None = None) -> Extraction:
    """Extract one case with pyradiomics' ``execute``.

    Parameters
    ----------
    image, mask : SimpleITK.Image or path
        The case (paths are read with SimpleITK), e.g. a perturbed version from :func:`harmony.apply`.
    params : mapping or RadiomicsFeatureExtractor
        pyradiomics parameters, or an extractor from :func:`make_extractor` (reuse one across cases: making
        one validates the parameters, about 50 ms).
    label : int, optional
        The mask label (default: the parameters' ``setting.label``, else 1).

    Returns
    -------
    Extraction
        ``features`` (name -> float) and ``diagnostics``; :func:`feature_rows` turns the features into rows
        of the long features table.

    Raises
    ------
    ConfigError
        The parameters are rejected (see :func:`make_extractor`).
    CaseError
        A path that does not exist or cannot be read.
    ValueError
        pyradiomics refuses the case (e.g. the mask lacks the label, or the ROI is too small).

    Examples
    --------
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> params = {"setting": {"binWidth": 1, "minimumROIDimensions": 1},
    ...           "featureClass": {"firstorder": ["Mean"], "shape": ["VoxelVolume"]}}
    >>> result = extract(*ibsi_digital_phantom(), params)
    >>> {k: round(v, 4) for k, v in result.features.items()}
    {'original_shape_VoxelVolume': 592.0, 'original_firstorder_Mean': 2.1486}
    """
    extractor = make_extractor(params) if isinstance(params, Mapping) else params
    result = extractor.execute(as_image(image, "image"), as_image(mask, "mask"), label=label)
    return split_result(result)


def feature_rows(features: Mapping[str, float], *, case_id: str, site: str,
                 variant_id: str = schema.ORIGINAL, repeat: int = 0) -> pd.DataFrame:
    """Tidy rows of the features table for one extraction.

    Concatenate the rows of several extractions (cases, variants) into the long table that
    :func:`harmony.icc`, :func:`harmony.reliability_table` and :func:`harmony.wide_features` take.

    Parameters
    ----------
    features : mapping of str to float
        One extraction's features (:attr:`Extraction.features`).
    case_id : str
        The case.
    site : str
        Its site (scanner, centre).
    variant_id : str, default "original"
        The perturbation it was extracted from.
    repeat : int, default 0
        The repeat.

    Returns
    -------
    DataFrame
        ``case_id, site, variant_id, repeat, feature, value`` (the columns of
        :data:`harmony.core.schema.FEATURES`), one row per feature.

    Examples
    --------
    >>> feature_rows({"original_firstorder_Mean": 2.5}, case_id="c1", site="A").to_dict("records")
    [{'case_id': 'c1', 'site': 'A', 'variant_id': 'original', 'repeat': 0, 'feature': 'original_firstorder_Mean', 'value': 2.5}]
    """
    import pandas as pd
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

    Parameters
    ----------
    feature : str
        A pyradiomics feature key, ``<image type>_<class>_<name>``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        ``feature`` is not a pyradiomics feature key.

    Examples
    --------
    >>> feature_class("wavelet-LLH_glszm_ZonePercentage")
    'glszm'
    """
    parts = feature.split("_")
    if len(parts) < 3:
        raise ValueError(f"not a pyradiomics feature key: {feature!r}")
    return parts[-2]


def image_type(feature: str) -> str:
    """The image type a feature was computed on (``log-sigma-1-0-mm-3D_glcm_Idm`` -> ``log-sigma-1-0-mm-3D``).

    Parameters
    ----------
    feature : str
        A pyradiomics feature key.

    Returns
    -------
    str

    Examples
    --------
    >>> image_type("original_shape_Sphericity")
    'original'
    """
    return feature.rsplit("_", 2)[0]


def _settings_for(extractor, label: int | None) -> dict[str, Any]:
    settings = extractor.settings.copy()
    if label is not None:
        settings["label"] = label
    return settings


_EXTRACTORS: dict[str, Any] = {}


def _cached_extractor(params: Mapping[str, Any]):
    """One extractor per distinct parameter dict and process (building one validates the schema: ~50 ms)."""
    key = canonical_params(params)
    if key not in _EXTRACTORS:
        extractor = make_extractor(params)
        extractor.settings["additionalInfo"] = False  # diagnostics are not features; they cost full-grid work
        _EXTRACTORS[key] = extractor
    return _EXTRACTORS[key]


def extraction_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The base pyradiomics parameters of an experiment: its params file with the inline settings over it.

    Parameters
    ----------
    config : mapping
        A validated experiment config (:func:`harmony.load_experiment`): its ``[extraction]`` section's
        ``params`` (a parameter file, or empty) and ``settings`` (merged over it); with ``standard = "ibsi"``,
        its ``ibsi`` options become the parameters' ``ibsi`` section (IBSI mode).

    Returns
    -------
    dict
        The parameters.

    Raises
    ------
    ConfigError
        The parameter file cannot be read, or pyradiomics' schema rejects the parameters: checked here, so
        that bad settings fail before any work.

    Examples
    --------
    >>> extraction_params({"extraction": {"params": "", "settings": {"setting": {"binWidth": 10}}}})
    {'setting': {'binWidth': 10}}
    """
    section = config["extraction"]
    params = load_params(section["params"]) if section["params"] else {}
    params = merge_params(params, section["settings"])
    if section.get("standard", "pyradiomics") == "ibsi":
        params = merge_params(params, {IBSI_SECTION: section.get("ibsi") or {}})
    make_extractor(params, source=section["params"] or f"{config.get('_source', '<config>')}: extraction.settings")
    return params
