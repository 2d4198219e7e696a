"""IBSI 1 compliance: pyradiomics on the IBSI digital phantom against the IBSI consensus reference values.

The reference values (theibsi/data_sets, CC BY 4.0) and the pyradiomics-to-IBSI feature map (pyradiomics
repository, BSD-3-Clause, with the corrections listed in ``harmony/gate/data/README.md``) ship as package data.
GLCM and GLRLM features are compared with the IBSI "3D, averaged" rows (pyradiomics computes one matrix per
3D direction and averages the feature over directions); GLSZM, NGTDM and GLDM with the "3D" rows. Both
values are rounded to 3 significant digits before comparing, as the IBSI reports its values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.core.files import atomic_write, write_text
from harmony.extraction.adapter import extract
from harmony.extraction.ibsi import IBSI_SECTION
from harmony.phantoms.digital import ibsi_digital_phantom

__all__ = [
    "ADJUSTED",
    "COLUMNS",
    "IBSI_CLASSES",
    "IBSI_CODE",
    "IBSI_NAME",
    "IBSI_SETTINGS",
    "IBSI_TAG",
    "KNOWN_DEVIATIONS",
    "PASS",
    "PASS_ADJUSTED",
    "PASS_TOLERANCE",
    "REFERENCE",
    "SIGNIFICANT_DIGITS",
    "TOLERANCE",
    "Deviation",
    "compliance_table",
    "feature_map",
    "ibsi_compliance",
    "ibsi_params",
    "markdown_table",
    "reference_values",
    "round_significant",
    "write_compliance",
]

#: pyradiomics settings under which it reproduces the IBSI digital-phantom values; the same as
#: ``experiments/params/ibsi.yaml`` (a test keeps the two equal). Every feature of each class is
#: enabled, deprecated ones included, so that each mapped feature gets a row.
IBSI_SETTINGS: dict[str, Any] = {
    "binWidth": 1, "voxelArrayShift": 0, "distances": [1], "gldm_a": 0, "minimumROIDimensions": 1, "label": 1,
}


#: The pyradiomics feature classes the IBSI 1 reference values cover.
IBSI_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: Digits the IBSI reports its values to; both sides are rounded to them before comparing.
SIGNIFICANT_DIGITS = 3


# columns of the compliance table (feature and reason are the schema's)
IBSI_NAME, IBSI_CODE, IBSI_TAG = "ibsi_name", "ibsi_code", "ibsi_tag"
REFERENCE, TOLERANCE, PASS, PASS_TOLERANCE = "reference", "tolerance", "pass", "pass_tolerance"
ADJUSTED, PASS_ADJUSTED = "adjusted_value", "pass_adjusted"
#: The columns of :func:`compliance_table`, in order.
COLUMNS = (schema.FEATURE, IBSI_NAME, IBSI_CODE, IBSI_TAG, REFERENCE, TOLERANCE, schema.VALUE, PASS,
           PASS_TOLERANCE, schema.REASON, ADJUSTED, PASS_ADJUSTED)


@dataclass(frozen=True)
class Deviation:
    """A known, documented difference between a pyradiomics definition and the IBSI one.

    Parameters
    ----------
    reason : str
        Why the values differ.
    undo : callable
        ``undo(value, n_voxels)`` converts pyradiomics' value to the IBSI definition, so the table can show
        that the reason accounts for the whole difference.

    Examples
    --------
    >>> KNOWN_DEVIATIONS["firstorder_Kurtosis"].undo(5.0, 74)
    2.0
    """

    reason: str
    undo: Callable[[float, int], float]


def _pca_axis(value: float, n_voxels: int) -> float:
    return value * math.sqrt(n_voxels / (n_voxels - 1))


_PCA_REASON = ("pyradiomics normalises the voxel-coordinate covariance by N instead of N-1, so the PCA axis "
               "lengths are smaller by sqrt((N-1)/N); elongation and flatness are ratios and agree")


#: Keyed by ``<class>_<feature>``.
KNOWN_DEVIATIONS: dict[str, Deviation] = {
    "firstorder_Kurtosis": Deviation(
        "pyradiomics reports kurtosis, the IBSI excess kurtosis: pyradiomics' value is 3 higher",
        lambda value, n: value - 3.0),
    "shape_MajorAxisLength": Deviation(_PCA_REASON, _pca_axis),
    "shape_MinorAxisLength": Deviation(_PCA_REASON, _pca_axis),
    "shape_LeastAxisLength": Deviation(_PCA_REASON, _pca_axis),
}


def _data_file(name: str):
    return resources.files("harmony.gate").joinpath("data", name)


def reference_values() -> pd.DataFrame:
    """The IBSI 1 digital-phantom reference values of the mapped features (tag, family, feature, value, tolerance).

    Returns
    -------
    DataFrame
        ``tag, family, feature, reference_value, tolerance``: the IBSI consensus values (CC BY 4.0), shipped
        as package data.

    Examples
    --------
    >>> ref = reference_values().set_index("tag")
    >>> ref.loc["cm_joint_max_3D_avg", ["reference_value", "tolerance"]].tolist()
    [0.503, 0.0]
    """
    with _data_file("ibsi1_digital_phantom_reference.csv").open("r", encoding="utf-8-sig") as fh:
        return pd.read_csv(fh, dtype={"tag": "str", "family": "str", "feature": "str"})


def feature_map() -> pd.DataFrame:
    """pyradiomics feature (class, name) -> IBSI name, code and reference-table tag, one row per mapped feature.

    Returns
    -------
    DataFrame
        ``pyradiomics_class, pyradiomics_feature, ibsi_name, ibsi_code, ibsi_tag, notes`` (all text).

    Examples
    --------
    >>> fmap = feature_map()
    >>> fmap.loc[fmap.pyradiomics_feature == "MaximumProbability", ["ibsi_code", "ibsi_tag"]].values.tolist()
    [['GYBY', 'cm_joint_max_3D_avg']]
    """
    with _data_file("pyradiomics_ibsi_map.csv").open("r", encoding="utf-8-sig") as fh:
        return pd.read_csv(fh, dtype="str", keep_default_na=False)


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """Round to ``digits`` significant digits; 0, NaN and infinities are returned unchanged.

    Parameters
    ----------
    value : float
        The number.
    digits : int, default 3
        Significant digits kept.

    Returns
    -------
    float

    Examples
    --------
    >>> round_significant(0.0256043), round_significant(1494.6), round_significant(-0.35462)
    (0.0256, 1490.0, -0.355)
    """
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def ibsi_params() -> dict[str, Any]:
    """pyradiomics parameters for the IBSI digital phantom: original image, every feature of the IBSI classes.

    Returns
    -------
    dict
        :data:`IBSI_SETTINGS`, the original image type, and every feature of :data:`IBSI_CLASSES`
        (deprecated ones included, so that each mapped feature gets a row).

    Examples
    --------
    >>> params = ibsi_params()
    >>> params["setting"]["binWidth"], sorted(params["featureClass"]) == sorted(IBSI_CLASSES)
    (1, True)
    """
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    return {
        "setting": dict(IBSI_SETTINGS),
        "imageType": {"Original": {}},
        "featureClass": {name: sorted(classes[name].getFeatureNames()) for name in IBSI_CLASSES},
    }


def _deprecated_features() -> set[str]:
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    return {f"{c}_{name}" for c in IBSI_CLASSES for name, old in classes[c].getFeatureNames().items() if old}


def compliance_table(features: Mapping[str, float], n_voxels: int) -> pd.DataFrame:
    """Compare extracted features (pyradiomics keys) with the IBSI reference values, one row per mapped feature.

    ``pass`` compares the values rounded to 3 significant digits; ``pass_tolerance`` accepts the rounded
    value within the IBSI tolerance of the reference. A failure's ``reason`` says why: a known deviation
    (then ``adjusted_value`` is the value converted to the IBSI definition), a deprecated feature for
    which pyradiomics computes no value, or an unexplained difference.

    Parameters
    ----------
    features : mapping of str to float
        Features extracted from the IBSI digital phantom (pyradiomics keys, ``original_<class>_<name>``).
    n_voxels : int
        Voxels in the phantom's mask (for the known deviations' conversions).

    Returns
    -------
    DataFrame
        :data:`COLUMNS`, one row per mapped feature.

    Examples
    --------
    >>> table = compliance_table({"original_firstorder_Mean": 2.1486}, n_voxels=74)
    >>> table.loc[table.feature == "original_firstorder_Mean", ["reference", "pass"]].values.tolist()
    [[2.15, True]]
    """
    reference = reference_values().set_index("tag")
    deprecated = _deprecated_features()
    rows = []
    for m in feature_map().itertuples(index=False):
        short = f"{m.pyradiomics_class}_{m.pyradiomics_feature}"
        key = f"{schema.ORIGINAL}_{short}"
        ref = reference.loc[m.ibsi_tag]
        expected, tolerance = float(ref["reference_value"]), float(ref["tolerance"])
        value = features.get(key, math.nan)
        rounded = round_significant(value)
        passed = rounded == round_significant(expected)
        within = bool(abs(rounded - expected) <= tolerance * (1 + 1e-9))
        deviation = KNOWN_DEVIATIONS.get(short)
        adjusted = deviation.undo(value, n_voxels) if deviation is not None else math.nan
        if passed:
            reason = ""
        elif key not in features:
            note = f" ({m.notes})" if m.notes else ""
            reason = (f"deprecated in pyradiomics, which computes no value{note}" if short in deprecated
                      else "not computed by this pyradiomics installation")
        elif deviation is not None:
            reason = deviation.reason
        else:
            reason = (f"unexplained difference: {rounded:.4g} vs {expected:.4g}"
                      + ("; within the IBSI tolerance" if within else ""))
        rows.append({
            schema.FEATURE: key, IBSI_NAME: m.ibsi_name, IBSI_CODE: m.ibsi_code, IBSI_TAG: m.ibsi_tag,
            REFERENCE: expected, TOLERANCE: tolerance, schema.VALUE: value, PASS: bool(passed),
            PASS_TOLERANCE: within, schema.REASON: reason, ADJUSTED: adjusted,
            PASS_ADJUSTED: bool(round_significant(adjusted) == round_significant(expected)),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ibsi_compliance(params: Mapping[str, Any] | None = None, standard: str = "pyradiomics") -> pd.DataFrame:
    """Extract the built-in IBSI digital phantom (default :func:`ibsi_params`) and build the compliance table.

    ``harmony gate ibsi``: how far the installed pyradiomics reproduces the IBSI 1 consensus values.

    Parameters
    ----------
    params : mapping, optional
        pyradiomics parameters; default :func:`ibsi_params`.
    standard : {"pyradiomics", "ibsi"}, default "pyradiomics"
        ``"ibsi"`` extracts in IBSI mode (adds the parameters' ``ibsi`` section; all 109 agree).

    Returns
    -------
    DataFrame
        The compliance table (:func:`compliance_table`).

    Raises
    ------
    ConfigError
        pyradiomics rejects ``params``.

    Examples
    --------
    pyradiomics-bhklab 3.1.4 agrees with 101 of the 109 mapped features; each of the other 8 has a reason:

    >>> table = ibsi_compliance()
    >>> int(table["pass"].sum()), len(table), bool((table["reason"] != "").sum() == 8)
    (101, 109, True)
    >>> int(ibsi_compliance(standard="ibsi")["pass"].sum())
    109
    """
    params = dict(ibsi_params() if params is None else params)
    if standard == "ibsi":
        params.setdefault(IBSI_SECTION, {})
    elif standard != "pyradiomics":
        raise ConfigError(f"standard must be 'pyradiomics' or 'ibsi', got {standard!r}")
    image, mask = ibsi_digital_phantom()
    result = extract(image, mask, params)
    n_voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    return compliance_table(result.features, n_voxels)


def markdown_table(table: pd.DataFrame) -> str:
    """The compliance table as Markdown, with the pass count first.

    Parameters
    ----------
    table : DataFrame
        What :func:`compliance_table` returns.

    Returns
    -------
    str

    Examples
    --------
    >>> table = compliance_table({"original_firstorder_Mean": 2.1486}, n_voxels=74)
    >>> markdown_table(table).splitlines()[2].startswith("1 of 109 mapped features agree")
    True
    """
    n_pass = int(table[PASS].sum())
    lines = [
        "# IBSI 1 compliance: pyradiomics on the IBSI digital phantom", "",
        f"{n_pass} of {len(table)} mapped features agree with the IBSI reference to {SIGNIFICANT_DIGITS} "
        f"significant digits; {int(table[PASS_TOLERANCE].sum())} within the IBSI tolerance.", "",
        "| feature | IBSI name | code | tag | reference | tolerance | value | pass | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        value = "—" if math.isnan(row[schema.VALUE]) else f"{row[schema.VALUE]:.6g}"
        lines.append(f"| {row[schema.FEATURE]} | {row[IBSI_NAME]} | {row[IBSI_CODE]} | {row[IBSI_TAG]} | "
                     f"{row[REFERENCE]:g} | {row[TOLERANCE]:g} | {value} | {'yes' if row[PASS] else 'no'} | "
                     f"{row[schema.REASON]} |")
    return "\n".join(lines) + "\n"


def write_compliance(table: pd.DataFrame, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``ibsi_compliance.csv`` and ``ibsi_compliance.md`` into ``out_dir``; returns their paths.

    Parameters
    ----------
    table : DataFrame
        What :func:`compliance_table` returns.
    out_dir : str or os.PathLike
        Where to write (created when absent).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The CSV and the Markdown file.
    """
    out = Path(out_dir)
    csv_path = atomic_write(out / "ibsi_compliance.csv", lambda tmp: table.to_csv(tmp, index=False))
    return csv_path, write_text(out / "ibsi_compliance.md", markdown_table(table))
