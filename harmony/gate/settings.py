"""The ``[gate]`` settings: the reference set (built-in phantoms, design) and the tolerances."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harmony.core.config import Field, Section
from harmony.extraction.adapter import feature_class

__all__ = ["WATCHED_VERSIONS", "DEFAULT_REL", "DEFAULT_ABS", "TOLERANCE", "PROCEDURAL_PHANTOMS", "BUILTIN_PHANTOMS", "SETTINGS",
           "Tolerance", "tolerance_for"]

#: Versions whose change is reported by default (keys of :func:`harmony.core.manifest.versions`).
WATCHED_VERSIONS = ("pyradiomics_distribution", "pyradiomics", "numpy", "SimpleITK")
#: The default relative and absolute tolerances of a feature value.
DEFAULT_REL, DEFAULT_ABS = 1e-6, 1e-9
#: One tolerance entry: global in ``[gate.tolerance]``, or per class or feature.
TOLERANCE = Section(
    {
        "rel": Field(float, DEFAULT_REL, min=0.0,
                     doc="Relative tolerance: |current - baseline| <= abs + rel * |baseline|."),
        "abs": Field(float, DEFAULT_ABS, min=0.0, doc="Absolute tolerance (matters for values near zero)."),
        "min_ccc": Field(float, 0.0, min=0.0, max=1.0,
                         doc="Fail when Lin's CCC across the reference set is below this; 0 turns the check off."),
    }
)


#: Small procedural phantoms (harmony.phantoms specs, rendered with a fixed seed) whose intensities span
#: several bins at common bin widths, so that a discretisation change reaches the texture features.
PROCEDURAL_PHANTOMS: dict[str, tuple[dict[str, Any], int]] = {
    "sphere": ({"grid": {"size": [20, 20, 20]},
                "lesion": {"radius_mm": 6.0, "intensity": 100.0, "heterogeneity": 30.0, "coarseness_mm": 1.5}}, 1),
    "lobulated": ({"grid": {"size": [22, 22, 22]},
                   "lesion": {"radius_mm": 7.0, "lobes": 4, "lobulation": 0.3, "intensity": 120.0,
                              "heterogeneity": 25.0, "regions": 3, "region_contrast": 30.0}}, 2),
    "necrotic": ({"grid": {"size": [22, 22, 22]},
                  "lesion": {"radius_mm": 7.0, "axes": [1.0, 0.8, 0.7], "necrosis_fraction": 0.3,
                             "intensity": 150.0, "heterogeneity": 20.0}}, 3),
}


#: Names of the built-in reference phantoms: the IBSI digital phantom and the procedural ones.
BUILTIN_PHANTOMS = ("ibsi", *PROCEDURAL_PHANTOMS)


def _check_phantoms(names: list) -> str | None:
    known = BUILTIN_PHANTOMS
    unknown = [n for n in names if n not in known]
    if unknown:
        return f"unknown phantom {unknown[0]!r} (known: {', '.join(sorted(known))})"
    if len(set(names)) != len(names):
        return "phantom names must be unique"
    return None


def _check_entry(what: str, name: str, entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return f"{what} {name!r}: expected a table such as {{ rel = 1e-4 }}, got {entry!r}"
    for key, value in entry.items():
        spec = TOLERANCE.fields.get(key)
        if spec is None:
            return f"{what} {name!r}: unknown key {key!r} (known: {', '.join(TOLERANCE.fields)})"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{what} {name!r}: {key} must be a finite number, got {value!r}"
        if value < spec.min or (spec.max is not None and value > spec.max):
            bounds = f">= {spec.min}" if spec.max is None else f"between {spec.min} and {spec.max}"
            return f"{what} {name!r}: {key} must be {bounds}, got {value!r}"
    return None


def _check_class_tolerances(table: dict) -> str | None:
    from radiomics import getFeatureClasses

    known = getFeatureClasses()
    for name, entry in table.items():
        if name not in known:
            return f"unknown feature class {name!r} (known: {', '.join(sorted(known))})"
        message = _check_entry("class", name, entry)
        if message:
            return message
    return None


def _check_feature_tolerances(table: dict) -> str | None:
    for name, entry in table.items():
        if len(name.split("_")) < 3:
            return f"{name!r} is not a pyradiomics feature key such as 'original_glcm_Contrast'"
        message = _check_entry("feature", name, entry)
        if message:
            return message
    return None


#: The ``[gate]`` section of an experiment config.
SETTINGS = Section(
    {
        "phantoms": Field(list, list(BUILTIN_PHANTOMS), item=Field(str), check=_check_phantoms,
                          doc="Built-in phantoms in the reference set (with cases.csv, if given)."),
        "fail_on_version_change": Field(bool, False,
                                        doc="Fail when a watched version differs from the baseline's."),
        "versions": Field(list, list(WATCHED_VERSIONS), item=Field(str),
                          doc="Keys of `harmony versions` whose change is reported."),
        "allow_added": Field(bool, False, doc="Pass when the current extraction has features the baseline lacks."),
        "tolerance": Section(
            {
                **TOLERANCE.fields,
                "class": Field(dict, {}, check=_check_class_tolerances,
                               doc="Per feature class, e.g. [gate.tolerance.class.glcm] rel = 1e-4."),
                "feature": Field(dict, {}, check=_check_feature_tolerances,
                                 doc='Per feature key, e.g. [gate.tolerance.feature."original_glcm_Idmn"].'),
            }
        ),
    },
    doc="The extractor-change gate: reference set and tolerances.",
)


@dataclass(frozen=True)
class Tolerance:
    """The tolerance of one feature (:func:`tolerance_for`).

    Parameters
    ----------
    rel, abs : float
        A value passes when ``|current - baseline| <= abs + rel * |baseline|``.
    min_ccc : float, default 0.0
        The feature fails when Lin's CCC across the reference set is below this (0: no check).
    """

    rel: float = DEFAULT_REL
    abs: float = DEFAULT_ABS
    min_ccc: float = 0.0


def tolerance_for(feature: str, tolerance: Mapping[str, Any]) -> Tolerance:
    """The tolerance of one feature: global, then its class's entry, then its own entry; key by key.

    Parameters
    ----------
    feature : str
        A pyradiomics feature key.
    tolerance : mapping
        The ``gate.tolerance`` section (absent global keys take their defaults).

    Returns
    -------
    Tolerance

    Examples
    --------
    >>> settings = {"rel": 1e-6, "abs": 1e-9, "min_ccc": 0.0, "class": {"glcm": {"rel": 1e-3, "abs": 1e-5}},
    ...             "feature": {"original_glcm_Idmn": {"rel": 0.1}}}
    >>> tolerance_for("original_glcm_Idmn", settings)
    Tolerance(rel=0.1, abs=1e-05, min_ccc=0.0)
    >>> tolerance_for("original_shape_Sphericity", settings)
    Tolerance(rel=1e-06, abs=1e-09, min_ccc=0.0)
    """
    values = {key: tolerance.get(key, getattr(Tolerance, key)) for key in TOLERANCE.fields}
    for entry in (tolerance.get("class", {}).get(feature_class(feature), {}),
                  tolerance.get("feature", {}).get(feature, {})):
        values.update(entry)
    return Tolerance(**{k: float(v) for k, v in values.items()})
