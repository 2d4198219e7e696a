"""IBSI 1 compliance on the CT phantom: configurations A-E, plain pyradiomics and IBSI mode side by side.

The phantom (CC BY-NC 3.0) is never shipped: users pass its folder (``image.nii.gz``, ``mask.nii.gz``). The
reference values of the 109 mapped features for each configuration ship as package data (``data/README.md``). A
feature agrees when its value, rounded to 3 significant digits, lies within the IBSI tolerance of the reference.
2D configurations (A, B) compare with the IBSI "2.5D" rows: pyradiomics' ``force2D`` merges the slices' matrices.

Every failure gets a named cause. The output corrections (kurtosis, PCA axes, deprecated features) are named by
feature; the image-processing ones by ablation: IBSI mode is rerun with each of its processing steps reverted to
pyradiomics' way alone, and a plain-mode failure is put down to the steps whose reversal makes it fail.
"""

from __future__ import annotations

import math
import os
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
from harmony.gate.ibsi import IBSI_CLASSES, feature_map, round_significant

__all__ = [
    "CONFIG",
    "CT_COLUMNS",
    "CT_CONFIGS",
    "STANDARD",
    "CtPhantom",
    "ct_compliance",
    "ct_junit",
    "ct_markdown",
    "ct_params",
    "ct_reference_values",
    "ct_summary",
    "load_ct_phantom",
    "write_ct_compliance",
]

#: The IBSI 1 CT-phantom configurations.
CT_CONFIGS = ("A", "B", "C", "D", "E")
STANDARD, CONFIG, TAG = "standard", "config", "ibsi_tag"
#: The columns of :func:`ct_compliance`.
CT_COLUMNS = (CONFIG, STANDARD, schema.FEATURE, "ibsi_name", TAG, "reference", "tolerance", schema.VALUE, "pass",
              schema.REASON)

# pyradiomics settings of each configuration (IBSI 1 reference manual, "Configurations"; configurations.json)
_COMMON = {"distances": [1], "gldm_a": 0, "voxelArrayShift": 0, "minimumROIDimensions": 1, "label": 1,
           "symmetricalGLCM": True}
_CONFIG_SETTINGS: dict[str, dict[str, Any]] = {
    "A": {"force2D": True, "force2Ddimension": 0, "resegmentRange": [-500, 400], "binWidth": 25},
    "B": {"force2D": True, "force2Ddimension": 0, "resampledPixelSpacing": [2, 2, 0], "interpolator": "sitkLinear",
          "resegmentRange": [-500, 400], "binCount": 32},
    "C": {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkLinear", "resegmentRange": [-1000, 400],
          "binWidth": 25},
    "D": {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkLinear", "resegmentRange": [-3, 3],
          "resegmentMode": "sigma", "binCount": 32},
    "E": {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkBSpline", "resegmentRange": [-1000, 400],
          "binCount": 32},
}
#: IBSI-mode additions per configuration (E combines the range with the 3-sigma outlier window).
_CONFIG_IBSI: dict[str, dict[str, Any]] = {"E": {"outlier_sigma": 3}}
#: Plain pyradiomics re-segments in one mode at a time; for E it gets the 3-sigma window (10 of 109 agree; the HU
#: range alone instead: 11).
_CONFIG_PLAIN: dict[str, dict[str, Any]] = {"E": {"resegmentRange": [-3, 3], "resegmentMode": "sigma"}}

#: Causes of the output corrections, keyed by ``class_feature``.
_OUTPUT_CAUSES = {
    "firstorder_Kurtosis": "pyradiomics reports kurtosis; the IBSI excess kurtosis (3 lower)",
    "shape_MajorAxisLength": "PCA axis length with the N covariance instead of N-1",
    "shape_MinorAxisLength": "PCA axis length with the N covariance instead of N-1",
    "shape_LeastAxisLength": "PCA axis length with the N covariance instead of N-1",
}
_DEPRECATED_CAUSE = "deprecated in pyradiomics, which computes no value (IBSI mode computes it: {})"
_DEPRECATED_SOURCES = {
    "glcm_SumVariance": "equals ClusterTendency", "glcm_Dissimilarity": "equals DifferenceAverage",
    "gldm_GrayLevelNonUniformityNormalized": "equals first-order Uniformity", "gldm_DependencePercentage": "1",
}
#: The processing steps IBSI mode changes, the ablation that reverts each (ibsi-section overrides), its cause.
_STEPS = {
    "grid": ("resampling on pyradiomics' corner-anchored grid instead of the IBSI grid (centres aligned, "
             "ceil(n*s/s') voxels)"),
    "roi": "the mask resampled by nearest neighbour instead of interpolated and kept where >= 0.5",
    "round": "interpolated intensities not rounded to integers",
    "resegment": "one re-segmentation mode only (IBSI: the range and the 3-sigma window combined)",
    "bins": "fixed-bin-size bins counted from a multiple of the bin width instead of the re-segmentation lower bound",
}


@dataclass(frozen=True)
class CtPhantom:
    """The IBSI 1 CT phantom as loaded: intensities cast to float and rounded to integers, and its mask.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The image (float64, integer HU) and the ROI mask (label 1).
    folder : pathlib.Path
        Where it was read from.
    """

    image: sitk.Image
    mask: sitk.Image
    folder: Path


def load_ct_phantom(folder: str | os.PathLike) -> CtPhantom:
    """Read the IBSI 1 CT phantom (``image.nii.gz``, ``mask.nii.gz``) from ``folder``.

    The IBSI asks for the NIfTI intensities to be cast to float and rounded to the nearest integer first.

    Parameters
    ----------
    folder : str or os.PathLike
        The phantom's folder (theibsi/data_sets, CC BY-NC 3.0; never shipped with harmony).

    Returns
    -------
    CtPhantom

    Raises
    ------
    ConfigError
        The folder or one of the two files is missing or unreadable.
    """
    folder = Path(folder)
    images = []
    for name in ("image.nii.gz", "mask.nii.gz"):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"{path}: IBSI CT phantom file not found (pass the folder holding image.nii.gz and "
                              "mask.nii.gz, from theibsi/data_sets ibsi_1_ct_radiomics_phantom)")
        try:
            images.append(sitk.ReadImage(str(path)))
        except RuntimeError as exc:
            raise ConfigError(f"{path}: cannot read the image ({str(exc).splitlines()[0]})") from None
    image = sitk.Cast(images[0], sitk.sitkFloat64)
    rounded = sitk.GetImageFromArray(np.round(sitk.GetArrayViewFromImage(image)))
    rounded.CopyInformation(image)
    mask = sitk.Cast(images[1] > 0, sitk.sitkUInt8)
    mask.CopyInformation(image)
    return CtPhantom(rounded, mask, folder)


def ct_reference_values(config: str | None = None) -> pd.DataFrame:
    """IBSI consensus values of the 109 mapped features on the CT phantom (package data).

    Parameters
    ----------
    config : str, optional
        One of :data:`CT_CONFIGS`; default all.

    Returns
    -------
    DataFrame
        ``config, tag, family, feature, reference_value, tolerance``.

    Examples
    --------
    >>> ref = ct_reference_values("C").set_index("tag")
    >>> ref.loc["cm_joint_avg_3D_avg", ["reference_value", "tolerance"]].tolist()
    [39.0, 0.2]
    """
    with resources.files("harmony.gate").joinpath("data", "ibsi1_ct_phantom_reference.csv").open(
            "r", encoding="utf-8") as fh:
        table = pd.read_csv(fh, dtype={"config": "str", "tag": "str"})
    return table if config is None else table[table[CONFIG] == _check_config(config)].reset_index(drop=True)


def _check_config(config: str) -> str:
    if config not in CT_CONFIGS:
        raise ConfigError(f"--config: unknown IBSI CT configuration {config!r} (use {', '.join(CT_CONFIGS)} or all)")
    return config


def ct_params(config: str, standard: str = "ibsi", revert: str | None = None) -> dict[str, Any]:
    """pyradiomics parameters of a CT-phantom configuration, plain (``"pyradiomics"``) or in IBSI mode.

    Parameters
    ----------
    config : str
        One of :data:`CT_CONFIGS`.
    standard : {"ibsi", "pyradiomics"}, default "ibsi"
        IBSI mode adds the ``ibsi`` section.
    revert : str, optional
        IBSI mode with one processing step done pyradiomics' way (the gate's ablation; a key of the causes).

    Returns
    -------
    dict
        Parameters for :func:`harmony.extraction.adapter.extract`: every feature of the IBSI classes.

    Examples
    --------
    >>> p = ct_params("E")
    >>> p["setting"]["resegmentRange"], p["ibsi"]
    ([-1000, 400], {'outlier_sigma': 3})
    >>> "ibsi" in ct_params("E", "pyradiomics")
    False
    """
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    params: dict[str, Any] = {
        "setting": {**_COMMON, **_CONFIG_SETTINGS[_check_config(config)]},
        "imageType": {"Original": {}},
        "featureClass": {name: sorted(classes[name].getFeatureNames()) for name in IBSI_CLASSES},
    }
    if standard == "ibsi":
        params[IBSI_SECTION] = dict(_CONFIG_IBSI.get(config, {}))
        if revert is not None:
            params[IBSI_SECTION]["revert"] = revert
    elif standard == "pyradiomics":
        params["setting"].update(_CONFIG_PLAIN.get(config, {}))
    else:
        raise ConfigError(f"standard must be 'ibsi' or 'pyradiomics', got {standard!r}")
    return params


def _steps(config: str) -> list[str]:
    """The processing steps where IBSI mode differs from plain pyradiomics for this configuration."""
    s = _CONFIG_SETTINGS[config]
    steps = []
    if s.get("resampledPixelSpacing"):
        steps += ["grid", "roi", "round"]
    if config in _CONFIG_IBSI:
        steps.append("resegment")
    if s.get("binWidth") is not None and s.get("resegmentRange") and s.get("resegmentMode", "absolute") == "absolute":
        steps.append("bins")
    return steps


def _rows(config: str, standard: str, features: dict[str, float], reference: pd.DataFrame) -> list[dict[str, Any]]:
    ref = reference.set_index("feature_key")
    rows = []
    for key, r in ref.iterrows():
        value = float(features.get(key, math.nan))
        rounded = round_significant(value)
        passed = bool(math.isfinite(value) and abs(rounded - r["reference_value"]) <= r["tolerance"] * (1 + 1e-9))
        rows.append({CONFIG: config, STANDARD: standard, schema.FEATURE: key, "ibsi_name": r["ibsi_name"],
                     TAG: r["tag"], "reference": float(r["reference_value"]), "tolerance": float(r["tolerance"]),
                     schema.VALUE: value, "pass": passed, schema.REASON: ""})
    return rows


def _mapped_reference(config: str) -> pd.DataFrame:
    fmap = feature_map()
    fmap = fmap.assign(feature_key=schema.ORIGINAL + "_" + fmap.pyradiomics_class + "_" + fmap.pyradiomics_feature)
    ref = ct_reference_values(config)
    ref = ref.assign(tag_3d=ref["tag"].str.replace("_2_5D", "_3D", regex=False))
    merged = ref.merge(fmap[["feature_key", "ibsi_name", "ibsi_tag"]], left_on="tag_3d", right_on="ibsi_tag")
    return merged.drop(columns=["tag_3d", "ibsi_tag"])


def ct_compliance(phantom: CtPhantom | str | os.PathLike, config: str,
                  standards: tuple[str, ...] = ("pyradiomics", "ibsi"), explain: bool = True) -> pd.DataFrame:
    """Extract the CT phantom in a configuration and compare with the IBSI reference, per standard.

    Parameters
    ----------
    phantom : CtPhantom or path
        The phantom (:func:`load_ct_phantom`) or its folder.
    config : str
        One of :data:`CT_CONFIGS`.
    standards : tuple of str, default ("pyradiomics", "ibsi")
        Which extractions: plain pyradiomics, IBSI mode, or both (side by side, in this order).
    explain : bool, default True
        Name the processing step behind each failure by ablation (one extra IBSI-mode extraction per step
        where the configuration's processing differs); without it such failures list every candidate step.

    Returns
    -------
    DataFrame
        :data:`CT_COLUMNS`, one row per mapped feature and standard; every failure has a ``reason``.

    Raises
    ------
    ConfigError
        An unknown configuration or standard, or an unreadable phantom.
    """
    phantom = phantom if isinstance(phantom, CtPhantom) else load_ct_phantom(phantom)
    reference = _mapped_reference(config)
    steps = _steps(config)
    results = {standard: extract(phantom.image, phantom.mask, ct_params(config, standard)).features
               for standard in standards}
    ablations: dict[str, set[str]] = {}
    if explain and "pyradiomics" in standards and steps:
        for step in steps:
            features = extract(phantom.image, phantom.mask, ct_params(config, "ibsi", revert=step)).features
            ablations[step] = {r[schema.FEATURE] for r in _rows(config, "ibsi", features, reference) if not r["pass"]}
    rows = []
    for standard in standards:
        for row in _rows(config, standard, results[standard], reference):
            if not row["pass"]:
                row[schema.REASON] = _cause(row, standard, steps, ablations, explain)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(CT_COLUMNS))


def _cause(row: dict[str, Any], standard: str, steps: list[str], ablations: dict[str, set[str]],
           explain: bool) -> str:
    short = row[schema.FEATURE].split("_", 1)[1]
    detail = f" ({round_significant(row[schema.VALUE]):.4g} vs {row['reference']:.4g} +- {row['tolerance']:g})"
    if standard == "ibsi":
        return "unexplained difference in IBSI mode" + detail
    if short in _DEPRECATED_SOURCES and not math.isfinite(row[schema.VALUE]):
        return _DEPRECATED_CAUSE.format(_DEPRECATED_SOURCES[short])
    causes = [_OUTPUT_CAUSES[short]] if short in _OUTPUT_CAUSES else []
    if explain and ablations:
        causes += [_STEPS[s] for s in steps if row[schema.FEATURE] in ablations[s]]
        if not causes:
            causes.append("several processing steps together: " + "; ".join(_STEPS[s] for s in steps))
    elif not causes:
        causes += [_STEPS[s] for s in steps] or ["unexplained difference"]
    return "; ".join(causes) + detail


def ct_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Passing features per configuration and standard (the README's compliance table).

    Parameters
    ----------
    table : DataFrame
        :func:`ct_compliance` rows (one or several configurations).

    Returns
    -------
    DataFrame
        ``config, standard, passed, total``.

    Examples
    --------
    >>> rows = pd.DataFrame({"config": ["A", "A"], "standard": ["ibsi", "ibsi"], "pass": [True, False]})
    >>> ct_summary(rows).to_dict("records")
    [{'config': 'A', 'standard': 'ibsi', 'passed': 1, 'total': 2}]
    """
    grouped = table.groupby([CONFIG, STANDARD], sort=False)["pass"]
    return pd.DataFrame({"passed": grouped.sum().astype(int), "total": grouped.size()}).reset_index()


def ct_markdown(table: pd.DataFrame) -> str:
    """The CT-phantom compliance table as Markdown: the summary first, then every feature side by side.

    Parameters
    ----------
    table : DataFrame
        :func:`ct_compliance` rows (one or several configurations).

    Returns
    -------
    str
    """
    lines = ["# IBSI 1 compliance on the CT phantom", "",
             "A feature agrees when its value, rounded to 3 significant digits, lies within the IBSI tolerance.", "",
             "| configuration | standard | agree |", "|---|---|---|"]
    lines += [f"| {r['config']} | {r['standard']} | {r['passed']} of {r['total']} |"
              for r in ct_summary(table).to_dict("records")]
    for config, part in table.groupby(CONFIG, sort=False):
        lines += ["", f"## Configuration {config}", "",
                  "| feature | tag | reference | tolerance | standard | value | pass | cause |", "|---|---|---|---|---|---|---|---|"]
        for r in part.to_dict("records"):
            value = "—" if not math.isfinite(r[schema.VALUE]) else f"{r[schema.VALUE]:.6g}"
            lines.append(f"| {r[schema.FEATURE]} | {r[TAG]} | {r['reference']:g} | {r['tolerance']:g} | "
                         f"{r[STANDARD]} | {value} | {'yes' if r['pass'] else 'no'} | {r[schema.REASON]} |")
    return "\n".join(lines) + "\n"


def ct_junit(table: pd.DataFrame) -> str:
    """JUnit XML: one testcase per configuration, standard and feature; IBSI-mode failures are failures.

    Plain-pyradiomics rows are informative: their failures (expected, each with its cause) are reported as
    skipped testcases, so that CI shows them without failing.

    Parameters
    ----------
    table : DataFrame
        :func:`ct_compliance` rows.

    Returns
    -------
    str
    """
    import xml.etree.ElementTree as ET

    required = table[STANDARD] == "ibsi"
    failures = int((required & ~table["pass"]).sum())
    skipped = int((~required & ~table["pass"]).sum())
    suite = ET.Element("testsuite", name="harmony gate ibsi ct-phantom", tests=str(len(table)),
                       failures=str(failures), errors="0", skipped=str(skipped))
    for r, req in zip(table.to_dict("records"), required):
        case = ET.SubElement(suite, "testcase", classname=f"harmony.gate.ibsi.{r[CONFIG]}.{r[STANDARD]}",
                             name=r[schema.FEATURE])
        if not r["pass"]:
            ET.SubElement(case, "failure" if req else "skipped", message=r[schema.REASON]).text = r[schema.REASON]
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_ct_compliance(table: pd.DataFrame, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``ibsi_ct.csv``, ``ibsi_ct.md`` and ``junit.xml`` into ``out_dir``.

    Parameters
    ----------
    table : DataFrame
        :func:`ct_compliance` rows.
    out_dir : str or os.PathLike
        Where to write (created when absent).

    Returns
    -------
    dict of str to pathlib.Path
        ``csv``, ``markdown`` and ``junit``.
    """
    out = Path(out_dir)
    return {"csv": atomic_write(out / "ibsi_ct.csv", lambda tmp: table.to_csv(tmp, index=False)),
            "markdown": write_text(out / "ibsi_ct.md", ct_markdown(table)),
            "junit": write_text(out / "junit.xml", ct_junit(table))}
