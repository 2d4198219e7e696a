"""Where a user's pyradiomics parameters make an extraction deviate from the IBSI, and what IBSI mode does about it.

``harmony gate ibsi --params PARAMS``: one row per deviation, with the setting, what it changes and whether
``extraction.standard = "ibsi"`` removes it. Settings that select something the IBSI leaves open (distances,
bin counts, 2D or 3D) are not deviations; settings IBSI mode keeps as given are reported with what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from harmony.extraction.ibsi import INTERPOLATION_ORDER

__all__ = ["DEVIATION_COLUMNS", "deviations_markdown", "params_deviations"]

#: The columns of :func:`params_deviations`.
DEVIATION_COLUMNS = ("setting", "value", "deviation", "removed_by_ibsi_mode", "ibsi_mode")

_REMOVED, _KEPT = True, False


def _row(setting: str, value: Any, deviation: str, removed: bool, how: str) -> dict[str, Any]:
    return {"setting": setting, "value": "(default)" if value is None else repr(value), "deviation": deviation,
            "removed_by_ibsi_mode": removed, "ibsi_mode": how}


def params_deviations(params: Mapping[str, Any]) -> pd.DataFrame:
    """The settings of a pyradiomics parameter dict under which its extraction deviates from the IBSI 1/2 definitions.

    Parameters
    ----------
    params : mapping
        pyradiomics parameters (:func:`harmony.extraction.load_params` reads a file).

    Returns
    -------
    DataFrame
        :data:`DEVIATION_COLUMNS`, one row per deviation (none: no rows).

    Examples
    --------
    >>> table = params_deviations({"setting": {"binWidth": 25, "resegmentRange": [-1000, 400]},
    ...                            "featureClass": {"glcm": []}})
    >>> table.loc[0, "setting"], bool(table.loc[0, "removed_by_ibsi_mode"])
    ('binWidth with resegmentRange', True)
    """
    setting = dict(params.get("setting") or {})
    image_types = dict(params.get("imageType") or {"Original": {}})
    classes = params.get("featureClass")
    enabled = set(classes) if classes is not None else {"shape", "firstorder", "glcm", "glrlm", "glszm", "gldm",
                                                        "ngtdm"}
    rows = []
    spacing = setting.get("resampledPixelSpacing")
    interpolator = setting.get("interpolator", "sitkBSpline")
    if spacing is not None:
        rows.append(_row("resampledPixelSpacing", spacing, "pyradiomics anchors the new grid at the first voxel's "
                         "corner; the IBSI aligns the grid centres and takes ceil(n*s/s') voxels", _REMOVED,
                         "interpolates on the IBSI grid"))
        rows.append(_row("resampledPixelSpacing", spacing, "the mask is resampled by nearest neighbour; the IBSI "
                         "interpolates it and keeps voxels >= 0.5 (partial-volume threshold)", _REMOVED,
                         "interpolates the ROI linearly, threshold ibsi.roi_threshold (0.5)"))
        rows.append(_row("resampledPixelSpacing", spacing, "interpolated intensities of an integer-valued image "
                         "(CT) are not rounded", _REMOVED, "rounds when the image is integer-valued "
                         "(ibsi.round_intensities = 'auto')"))
        if interpolator not in INTERPOLATION_ORDER:
            rows.append(_row("interpolator", interpolator, "not an interpolator the IBSI describes (nearest, "
                             "linear, cubic spline)", _KEPT, "refuses it: use sitkLinear or sitkBSpline"))
    reseg, mode = setting.get("resegmentRange"), setting.get("resegmentMode", "absolute")
    bin_width = setting.get("binWidth", 25) if setting.get("binCount") is None else None
    if bin_width is not None:
        if reseg is not None and mode == "absolute":
            rows.append(_row("binWidth with resegmentRange", bin_width, "fixed-bin-size bins are counted from a "
                             "multiple of binWidth below the ROI minimum, not from the re-segmentation lower bound "
                             f"{reseg[0]}: features of absolute grey level (JointAverage, ...) shift", _REMOVED,
                             "counts bins from the lower bound"))
        else:
            rows.append(_row("binWidth", bin_width, "fixed-bin-size bins are counted from a multiple of binWidth "
                             "below the ROI minimum; the IBSI counts from the ROI minimum when no re-segmentation "
                             "range is set", _REMOVED, "counts bins from the ROI minimum (set resegmentRange to give "
                             "the lower bound the IBSI recommends)"))
    if reseg is not None and mode == "relative":
        rows.append(_row("resegmentMode", mode, "relative re-segmentation is not an IBSI method", _KEPT,
                         "refuses it: use absolute (a range) or sigma (an outlier window)"))
    if setting.get("resegmentShape"):
        rows.append(_row("resegmentShape", True, "shape features from the re-segmented mask; IBSI morphology uses "
                         "the ROI before re-segmentation", _REMOVED, "sets it to false"))
    if setting.get("voxelArrayShift", 0):
        rows.append(_row("voxelArrayShift", setting["voxelArrayShift"], "Energy, TotalEnergy and "
                         "RootMeanSquared of shifted intensities", _REMOVED, "sets it to 0"))
    if setting.get("symmetricalGLCM", True) is False:
        rows.append(_row("symmetricalGLCM", False, "the IBSI GLCM is symmetric", _KEPT, "keeps it: set true"))
    if setting.get("weightingNorm") is not None:
        rows.append(_row("weightingNorm", setting["weightingNorm"], "distance-weighted direction merging is not "
                         "an IBSI aggregation", _KEPT, "keeps it: leave it unset"))
    if setting.get("normalize"):
        rows.append(_row("normalize", True, "z-score normalisation before resampling is not an IBSI step", _KEPT,
                         "keeps it (applied by pyradiomics after the IBSI interpolation): leave it off for CT"))
    if "firstorder" in enabled:
        rows.append(_row("featureClass.firstorder", "Kurtosis", "pyradiomics reports kurtosis; the IBSI excess "
                         "kurtosis (3 lower)", _REMOVED, "reports excess kurtosis"))
    if "shape" in enabled:
        rows.append(_row("featureClass.shape", "Major/Minor/LeastAxisLength", "PCA of the voxel coordinates with "
                         "the N covariance; the IBSI uses N-1", _REMOVED, "rescales by sqrt(N/(N-1))"))
    for cls, names in (("glcm", "SumVariance, Dissimilarity"),
                       ("gldm", "GrayLevelNonUniformityNormalized, DependencePercentage")):
        if cls in enabled:
            rows.append(_row(f"featureClass.{cls}", names, "deprecated in pyradiomics, no value, although the IBSI "
                             "defines them", _REMOVED, "computes them from the features they equal"))
    for name, label in (("LoG", "its LoG is scaled by sigma^2 in voxels, a recursive approximation, with no 2D "
                                "form and no choice of boundary"),
                        ("Wavelet", "its level-2 wavelets re-apply the level-1 filter (not a trous), periodic "
                                    "boundaries, no rotation invariance")):
        if name in image_types:
            rows.append(_row(f"imageType.{name}", image_types[name] or {}, f"not the IBSI 2 filter: {label}",
                             _KEPT, f"keeps pyradiomics' filter: use the image type {name}_IBSI"))
    return pd.DataFrame(rows, columns=list(DEVIATION_COLUMNS))


def deviations_markdown(table: pd.DataFrame, source: str) -> str:
    """The deviations table as Markdown.

    Parameters
    ----------
    table : DataFrame
        :func:`params_deviations`' result.
    source : str
        The parameter file, for the title.

    Returns
    -------
    str

    Examples
    --------
    >>> print(deviations_markdown(params_deviations({"featureClass": {"ngtdm": []}}), "p.yaml").splitlines()[2])
    1 deviation from the IBSI; IBSI mode removes 1.
    """
    removed = int(table["removed_by_ibsi_mode"].sum())
    lines = [f"# IBSI deviations of {source}", "",
             f"{len(table)} deviation{'s' if len(table) != 1 else ''} from the IBSI; IBSI mode removes {removed}.", "",
             "| setting | value | what it changes | IBSI mode |", "|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['value']} | {r['deviation']} | "
              f"{'removed: ' if r['removed_by_ibsi_mode'] else 'kept: '}{r['ibsi_mode']} |"
              for r in table.to_dict("records")]
    return "\n".join(lines) + "\n"
