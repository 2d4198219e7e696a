"""The IBSI 2 filters as pyradiomics image types: ``LoG_IBSI`` and ``Wavelet_IBSI``.

They sit beside pyradiomics' own ``LoG`` and ``Wavelet`` in a parameter file's ``imageType`` section, under
their own names rather than as an option of pyradiomics' types: a parameter file that says ``LoG`` keeps
meaning pyradiomics' filter (and its feature values), one that says ``LoG_IBSI`` cannot be mistaken for it, and
the feature names say which filter made them (``ibsi-log-sigma-1-5-mm-3D-mirror_firstorder_Mean``). The
responses are :mod:`harmony.extraction.ibsi_filters`' (checked against the IBSI 2 consensus response maps).

Settings of ``LoG_IBSI``: ``sigma`` (list of mm, required), ``boundary`` (``mirror`` | ``nearest`` | ``zero`` |
``periodic``, default ``mirror``), ``truncate`` (in sigmas, default 4), ``dimensions`` (3, or 2 to filter each
axial slice in-plane; default 3). Settings of ``Wavelet_IBSI``: ``wavelet`` (a pywt name, default ``coif1``),
``level`` (an integer or a list, default 1), ``bands`` (list of ``L``/``H`` strings in the order x, y, z; default
all 8, or all 4 in 2D), ``boundary`` (default ``mirror``), ``rotationInvariant`` (average over the 24
right-angle rotations, 4 in 2D; default false), ``dimensions`` (default 3). Any other key is a pyradiomics
setting for that image type (e.g. ``binWidth``) and is checked by pyradiomics' schema.

pyradiomics looks image types up as ``get<name>Image`` in ``radiomics.imageoperations``; :func:`register` adds
the two generators there (it adds names, it replaces none), which is how ``execute`` and harmony's shared
extraction (:mod:`harmony.extraction.shared`) both run them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.core.errors import ConfigError
from harmony.extraction.ibsi_filters import BOUNDARIES, log_ibsi, wavelet_ibsi

__all__ = ["IBSI_IMAGE_TYPES", "filter_spec", "filter_reach_voxels", "split_image_types", "register", "log_image_name",
           "wavelet_image_name", "image_names", "filtered_images"]

_LOG_KEYS = {"sigma", "boundary", "truncate", "dimensions"}
_WAVELET_KEYS = {"wavelet", "level", "bands", "boundary", "rotationInvariant", "dimensions"}
#: harmony's image types and the filter settings each reads (other keys are pyradiomics settings).
IBSI_IMAGE_TYPES = {"LoG_IBSI": _LOG_KEYS, "Wavelet_IBSI": _WAVELET_KEYS}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def filter_spec(image_type: str, custom: Mapping[str, Any] | None, source: str = "<params>") -> dict[str, Any]:
    """Check one IBSI image type's settings and fill in the defaults.

    Parameters
    ----------
    image_type : {"LoG_IBSI", "Wavelet_IBSI"}
        The image type.
    custom : mapping or None
        Its settings from the parameter file's ``imageType`` section.
    source : str, default "<params>"
        Where the parameters came from, for the messages.

    Returns
    -------
    dict
        The settings with every filter key set (the pyradiomics settings among them are passed through).

    Raises
    ------
    ConfigError
        A missing or invalid filter setting, named with its value.

    Examples
    --------
    >>> filter_spec("LoG_IBSI", {"sigma": [1.5]})
    {'sigma': [1.5], 'boundary': 'mirror', 'truncate': 4.0, 'dimensions': 3}
    >>> filter_spec("Wavelet_IBSI", {"wavelet": "db3", "level": 2, "bands": ["HHH"], "rotationInvariant": True})
    {'wavelet': 'db3', 'level': [2], 'bands': ['HHH'], 'boundary': 'mirror', 'rotationInvariant': True, 'dimensions': 3}
    >>> filter_spec("LoG_IBSI", {"sigma": [0]})
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: <params>: imageType.LoG_IBSI.sigma must be a list of numbers > 0 (mm), got [0]
    """
    import pywt

    spec = dict(custom or {})
    where = f"{source}: imageType.{image_type}"

    def bad(key: str, wanted: str) -> ConfigError:
        return ConfigError(f"{where}.{key} must be {wanted}, got {spec.get(key)!r}")

    boundary = spec.get("boundary", "mirror")
    if boundary not in BOUNDARIES:
        raise bad("boundary", " | ".join(BOUNDARIES))
    dimensions = spec.get("dimensions", 3)
    if dimensions not in (2, 3) or isinstance(dimensions, bool):
        raise bad("dimensions", "3 or 2 (each axial slice in-plane)")
    if image_type == "LoG_IBSI":
        sigma = spec.get("sigma")
        if not isinstance(sigma, list) or not sigma or not all(_number(s) and s > 0 for s in sigma):
            raise bad("sigma", "a list of numbers > 0 (mm)")
        truncate = spec.get("truncate", 4.0)
        if not _number(truncate) or truncate <= 0:
            raise bad("truncate", "a number > 0 (sigmas)")
        checked = {"sigma": [float(s) for s in sigma], "boundary": boundary, "truncate": float(truncate),
                   "dimensions": dimensions}
        return {**checked, **{k: v for k, v in spec.items() if k not in checked}}
    if image_type != "Wavelet_IBSI":
        raise ValueError(f"not an IBSI image type: {image_type!r} (known: {', '.join(IBSI_IMAGE_TYPES)})")
    wavelet = spec.get("wavelet", "coif1")
    if wavelet not in pywt.wavelist(kind="discrete"):
        raise bad("wavelet", "a discrete pywt wavelet (haar, db1-db38, sym2-sym20, coif1-coif17, ...)")
    level = spec.get("level", 1)
    levels = level if isinstance(level, list) else [level]
    if not levels or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in levels):
        raise bad("level", "an integer >= 1 or a list of them")
    every_band = ["".join(b) for b in itertools.product("LH", repeat=dimensions)]
    bands = spec.get("bands", every_band)
    if not isinstance(bands, list) or not bands or not all(b in every_band for b in bands):
        raise bad("bands", f"a list of {dimensions}-letter bands ({', '.join(every_band)}; axes x, y"
                           f"{', z' if dimensions == 3 else ''})")
    rotation = spec.get("rotationInvariant", False)
    if not isinstance(rotation, bool):
        raise bad("rotationInvariant", "true or false")
    checked = {"wavelet": wavelet, "level": levels, "bands": bands, "boundary": boundary,
               "rotationInvariant": rotation, "dimensions": dimensions}
    return {**checked, **{k: v for k, v in spec.items() if k not in checked}}


def filter_reach_voxels(image_types: Mapping[str, Any] | None, spacing_mm: Sequence[float]) -> int:
    """How many voxels beyond a voxel the widest IBSI filter of ``image_types`` reads (0 without one).

    IBSI mode crops the resampled image to the ROI plus a margin before filtering; a margin narrower than
    this reach would make the filter see the crop's boundary instead of the image near the ROI's edge.
    LoG: ``truncate * sigma`` over the finest spacing; wavelet: the a trous support
    ``(length - 1) * (2**level - 1)`` of its decomposition filter.

    Parameters
    ----------
    image_types : mapping or None
        The ``imageType`` section of pyradiomics parameters.
    spacing_mm : sequence of float
        The spacing the filters run on.

    Returns
    -------
    int
        The reach in voxels.

    Examples
    --------
    >>> filter_reach_voxels({"Original": {}, "LoG_IBSI": {"sigma": [1.5, 3.0]}}, (1.0, 1.0, 2.0))
    12
    >>> filter_reach_voxels({"Wavelet_IBSI": {"wavelet": "db3", "level": 2}}, (1.0, 1.0, 1.0))
    15
    """
    import pywt

    reach = 0
    for image_type, custom in (image_types or {}).items():
        if image_type not in IBSI_IMAGE_TYPES:
            continue
        spec = filter_spec(image_type, custom)
        if image_type == "LoG_IBSI":
            reach = max(reach, int(np.ceil(spec["truncate"] * max(spec["sigma"]) / min(spacing_mm))))
        else:
            length = pywt.Wavelet(spec["wavelet"]).dec_len
            reach = max(reach, (length - 1) * (2 ** max(spec["level"]) - 1))
    return reach


def split_image_types(params: Mapping[str, Any],
                      source: str = "<params>") -> tuple[dict[str, Any], dict[str, dict[str, Any] | None] | None]:
    """Take the IBSI image types out of a parameter dict, for pyradiomics' schema (which does not know them).

    Parameters
    ----------
    params : mapping
        pyradiomics parameters, possibly with ``LoG_IBSI`` / ``Wavelet_IBSI`` in ``imageType``.
    source : str, default "<params>"
        Where the parameters came from, for the messages.

    Returns
    -------
    (dict, dict or None)
        The parameters without the IBSI image types, and every image type in the file's order mapped to its
        checked settings (:func:`filter_spec`) for the IBSI ones and to None for pyradiomics' own; None when
        there is no IBSI image type (the parameters are then returned as they are).

    Raises
    ------
    ConfigError
        An invalid IBSI filter setting.

    Examples
    --------
    >>> plain, order = split_image_types({"imageType": {"Original": {}, "LoG_IBSI": {"sigma": [2]}}})
    >>> plain, list(order), order["LoG_IBSI"]["sigma"]
    ({'imageType': {'Original': {}}}, ['Original', 'LoG_IBSI'], [2.0])
    """
    image_types = params.get("imageType") or {}
    if not isinstance(image_types, Mapping) or not any(name in IBSI_IMAGE_TYPES for name in image_types):
        return dict(params), None
    order = {name: filter_spec(name, custom, source) if name in IBSI_IMAGE_TYPES else None
             for name, custom in image_types.items()}
    plain = {name: custom for name, custom in image_types.items() if name not in IBSI_IMAGE_TYPES}
    return {**params, "imageType": plain}, order


def _number_text(value: float) -> str:
    return str(float(value)).replace(".", "-")


def log_image_name(sigma_mm: float, dimensions: int, boundary: str, truncate: float = 4.0) -> str:
    """The image-type part of a ``LoG_IBSI`` feature name.

    Parameters
    ----------
    sigma_mm : float
        The sigma.
    dimensions : {3, 2}
        The filter's dimension.
    boundary : str
        The boundary condition.
    truncate : float, default 4.0
        The truncation in sigmas (named only when it is not IBSI's 4).

    Returns
    -------
    str

    Examples
    --------
    >>> log_image_name(1.5, 2, "mirror")
    'ibsi-log-sigma-1-5-mm-2D-mirror'
    """
    name = f"ibsi-log-sigma-{_number_text(sigma_mm)}-mm-{dimensions}D-{boundary}"
    return name if truncate == 4.0 else f"{name}-truncate-{_number_text(truncate)}"


def wavelet_image_name(wavelet: str, level: int, band: str, boundary: str, rotation_invariant: bool) -> str:
    """The image-type part of a ``Wavelet_IBSI`` feature name.

    Parameters
    ----------
    wavelet : str
        The pywt wavelet.
    level : int
        The decomposition level.
    band : str
        The band (2 letters: a 2D filter).
    boundary : str
        The boundary condition.
    rotation_invariant : bool
        Whether the response is averaged over right-angle rotations.

    Returns
    -------
    str

    Examples
    --------
    >>> wavelet_image_name("db3", 2, "HHH", "mirror", True)
    'ibsi-wavelet-db3-level2-HHH-mirror-rotinv'
    """
    name = f"ibsi-wavelet-{wavelet}-level{level}-{band}-{boundary}"
    return f"{name}-rotinv" if rotation_invariant else name


def _as_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _voxels(image: sitk.Image) -> tuple[np.ndarray, tuple[float, ...]]:
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    if array.ndim != 3:
        raise ValueError(f"IBSI filters need a 3D image, got {array.ndim}D")
    return array, tuple(image.GetSpacing())[::-1]


def _log_images(image: sitk.Image, mask: sitk.Image | None, **kwargs: Any) -> Iterator[tuple[sitk.Image, str, dict]]:
    """pyradiomics' image generator for ``LoG_IBSI`` (``getLoG_IBSIImage``): one response per sigma."""
    array, spacing = _voxels(image)
    for sigma in kwargs["sigma"]:
        response = log_ibsi(array, spacing, sigma, boundary=kwargs["boundary"], truncate=kwargs["truncate"],
                            dimensions=kwargs["dimensions"])
        name = log_image_name(sigma, kwargs["dimensions"], kwargs["boundary"], kwargs["truncate"])
        yield _as_image(response, image), name, kwargs


def _wavelet_images(image: sitk.Image, mask: sitk.Image | None,
                    **kwargs: Any) -> Iterator[tuple[sitk.Image, str, dict]]:
    """pyradiomics' image generator for ``Wavelet_IBSI`` (``getWavelet_IBSIImage``): one response per level and band."""
    array, _ = _voxels(image)
    for level in kwargs["level"]:
        for band in kwargs["bands"]:
            response = wavelet_ibsi(array, kwargs["wavelet"], band, level=level, boundary=kwargs["boundary"],
                                    rotation_invariant=kwargs["rotationInvariant"])
            name = wavelet_image_name(kwargs["wavelet"], level, band, kwargs["boundary"], kwargs["rotationInvariant"])
            yield _as_image(response, image), name, kwargs


def image_names(image_type: str, settings: Mapping[str, Any] | None) -> list[str]:
    """The image-type parts of the feature names an IBSI image type produces, in its order.

    Parameters
    ----------
    image_type : {"LoG_IBSI", "Wavelet_IBSI"}
        The image type.
    settings : mapping or None
        Its settings (:func:`filter_spec` checks them).

    Returns
    -------
    list of str

    Raises
    ------
    ConfigError
        Invalid settings.

    Examples
    --------
    >>> image_names("Wavelet_IBSI", {"wavelet": "haar", "bands": ["LLL", "HHH"]})
    ['ibsi-wavelet-haar-level1-LLL-mirror', 'ibsi-wavelet-haar-level1-HHH-mirror']
    """
    spec = filter_spec(image_type, settings)
    if image_type == "LoG_IBSI":
        return [log_image_name(s, spec["dimensions"], spec["boundary"], spec["truncate"]) for s in spec["sigma"]]
    return [wavelet_image_name(spec["wavelet"], level, band, spec["boundary"], spec["rotationInvariant"])
            for level in spec["level"] for band in spec["bands"]]


def filtered_images(image: sitk.Image, image_type: str,
                    settings: Mapping[str, Any] | None) -> list[tuple[sitk.Image, str]]:
    """The filtered images an IBSI image type gives pyradiomics, with their names.

    Parameters
    ----------
    image : SimpleITK.Image
        A 3D image.
    image_type : {"LoG_IBSI", "Wavelet_IBSI"}
        The image type.
    settings : mapping or None
        Its settings (:func:`filter_spec` checks them).

    Returns
    -------
    list of (SimpleITK.Image, str)
        Each response (float64, on the image's grid) and its image-type name.

    Raises
    ------
    ConfigError
        Invalid settings.

    Examples
    --------
    >>> image = sitk.GetImageFromArray(np.full((5, 5, 5), 3.0))
    >>> [(float(sitk.GetArrayViewFromImage(out).max()), name) for out, name in
    ...  filtered_images(image, "Wavelet_IBSI", {"wavelet": "haar", "bands": ["HHH"]})]
    [(0.0, 'ibsi-wavelet-haar-level1-HHH-mirror')]
    """
    generator = _log_images if image_type == "LoG_IBSI" else _wavelet_images
    return [(out, name) for out, name, _ in generator(image, None, **filter_spec(image_type, settings))]


def register() -> None:
    """Make pyradiomics' ``execute`` find the IBSI image types (idempotent; adds names, replaces none).

    Examples
    --------
    >>> from radiomics import imageoperations
    >>> register()
    >>> hasattr(imageoperations, "getLoG_IBSIImage")
    True
    """
    from radiomics import imageoperations

    for name, generator in (("LoG_IBSI", _log_images), ("Wavelet_IBSI", _wavelet_images)):
        attribute = f"get{name}Image"
        current = getattr(imageoperations, attribute, None)
        if current is not None and getattr(current, "__module__", None) != __name__:
            raise RuntimeError(f"radiomics.imageoperations.{attribute} exists already and is not harmony's")
        setattr(imageoperations, attribute, generator)
