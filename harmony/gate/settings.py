"""The ``[gate]`` settings: the reference set (built-in phantoms, design) and the tolerances."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harmony.core.config import Field, Section
from harmony.extraction.adapter import feature_class
from harmony.phantoms.digital import ibsi_digital_phantom
from harmony.phantoms.render import render_phantom

# -- settings ------------------------------------------------------------------------------------------

#: Versions whose change is reported by default (keys of ``harmony.io.versions()``).
WATCHED_VERSIONS = ("pyradiomics_distribution", "pyradiomics", "numpy", "SimpleITK")


DEFAULT_REL, DEFAULT_ABS = 1e-6, 1e-9


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


def _builtin_phantoms() -> dict[str, Callable[[], tuple[Any, Any]]]:
    """Name -> function returning (image, mask) of every built-in reference phantom."""
    from functools import partial


    found: dict[str, Callable[[], tuple[Any, Any]]] = {"ibsi": ibsi_digital_phantom}
    for name, (spec, seed) in PROCEDURAL_PHANTOMS.items():
        found[name] = partial(render_phantom, spec, seed)
    return found


def _check_phantoms(names: list) -> str | None:
    known = _builtin_phantoms()
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


SETTINGS = Section(
    {
        "phantoms": Field(list, ["ibsi", *PROCEDURAL_PHANTOMS], item=Field(str), check=_check_phantoms,
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
    rel: float = DEFAULT_REL
    abs: float = DEFAULT_ABS
    min_ccc: float = 0.0


def tolerance_for(feature: str, tolerance: Mapping[str, Any]) -> Tolerance:
    """The tolerance of one feature: global, then its class's entry, then its own entry; key by key.

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
