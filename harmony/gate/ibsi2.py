"""IBSI 2 compliance of the filters: plain pyradiomics and harmony's IBSI filters side by side.

Phase 1 filters the IBSI 2 digital phantoms and compares each response map with the consensus map: a filter
passes when every voxel lies within 1% of the reference map's intensity range. Phase 2 filters the IBSI 1 CT
phantom (after IBSI 1 processing) and compares the 15 intensity statistics pyradiomics computes with the
consensus values and tolerances. The tests are the ones of the IBSI 2 reference manual that pyradiomics' LoG and
separable wavelet can express. Harmony's side runs the ``LoG_IBSI`` and ``Wavelet_IBSI`` image types
(:mod:`harmony.extraction.ibsi_image_types`), in phase 2 through the extraction in IBSI mode; the plain side
runs pyradiomics' ``LoG`` and ``Wavelet`` as they are. Every failure gets a named cause.

The phantoms and response maps (theibsi/data_sets, CC BY 4.0; theibsi/ibsi_2_reference_data, CC0) are not
shipped: users pass the folder holding ``phantoms/`` and ``response_maps/``. The phase 2 reference values ship
as package data (``data/README.md``). The CT phantom (CC BY-NC 3.0) is passed by its folder too.
"""

from __future__ import annotations

import logging
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
from harmony.extraction.adapter import extract, make_extractor
from harmony.extraction.ibsi import IBSI_SECTION
from harmony.extraction.ibsi_image_types import filtered_images, image_names
from harmony.gate.ibsi_ct import CtPhantom, load_ct_phantom

__all__ = ["PHASE1_TOLERANCE_PCT", "FilterTest", "PHASE1_TESTS", "PHASE2_CONFIGS", "STATISTICS", "IMPLEMENTATIONS",
           "FILTER_COLUMNS", "phase2_reference_values", "phase1_compliance", "phase2_params", "phase2_compliance",
           "filter_summary", "filter_markdown", "filter_junit", "write_filter_compliance"]

logger = logging.getLogger(__name__)

#: A phase-1 response map passes when every voxel is within this share (%) of the reference map's range.
PHASE1_TOLERANCE_PCT = 1.0
#: The two sides compared: plain pyradiomics, and harmony's IBSI filters (IBSI mode in phase 2).
IMPLEMENTATIONS = ("pyradiomics", "harmony")

_CAUSES = {
    "log_scale": "pyradiomics' LoG multiplies the response by sigma^2 and approximates the Gaussian recursively "
                 "(IBSI: the truncated sampled kernel, in voxel units)",
    "log_2d": "pyradiomics has no 2D LoG (its LoG is 3D only)",
    "rotation": "pyradiomics' wavelet has no rotation invariance (IBSI: the average over right-angle rotations)",
    "a_trous": "pyradiomics' level-2 wavelet re-applies the level-1 filters to the level-1 approximation "
               "(IBSI: a trous, the level-1 filters dilated by zeros)",
    "ibsi1": "pyradiomics' resampling: a corner-anchored grid, no rounding of the interpolated intensities, a "
             "nearest-neighbour ROI (IBSI 1 steps that harmony's IBSI mode does)",
    "kurtosis": "pyradiomics' Kurtosis is not excess kurtosis (3 higher)",
    "harmony": "outside the tolerance: not a known deviation (a harmony defect)",
    "unexpected": "outside the tolerance although pyradiomics expresses this test: not a known deviation",
}


@dataclass(frozen=True)
class FilterTest:
    """One IBSI 2 test: the filter as harmony's image type, its pyradiomics counterpart and why that one fails.

    Parameters
    ----------
    test : str
        The IBSI 2 test id (``"2_a"``; phase 2: ``"3.B"``).
    image_type : str or None
        harmony's image type (``LoG_IBSI``, ``Wavelet_IBSI``), None for the unfiltered image.
    settings : dict
        Its settings (:func:`harmony.extraction.ibsi_image_types.filter_spec`), selecting one response.
    pyradiomics : tuple or None
        ``(image type, settings, name of the output)`` for pyradiomics, or None when it cannot express the test.
    causes : tuple of str
        Keys of the named causes of a plain-pyradiomics failure.
    phantom : str, default ""
        Phase 1: the digital phantom's name.
    """

    test: str
    image_type: str | None
    settings: dict[str, Any]
    pyradiomics: tuple[str, dict[str, Any], str] | None
    causes: tuple[str, ...] = ()
    phantom: str = ""


def _log(sigma: float, boundary: str, dimensions: int = 3) -> dict[str, Any]:
    return {"sigma": [sigma], "boundary": boundary, "dimensions": dimensions}


def _wavelet(wavelet: str, band: str, level: int, boundary: str, rotation: bool) -> dict[str, Any]:
    return {"wavelet": wavelet, "bands": [band], "level": level, "boundary": boundary,
            "rotationInvariant": rotation, "dimensions": len(band)}


def _plain_wavelet(wavelet: str, band: str, level: int) -> tuple[str, dict[str, Any], str]:
    settings: dict[str, Any] = {"wavelet": wavelet, "level": level}
    if len(band) == 2:
        settings.update(force2D=True, force2Ddimension=0)
    return "Wavelet", settings, f"wavelet{'' if level == 1 else level}-{band}"


#: The phase-1 tests of the IBSI 2 reference manual that pyradiomics' filters can express (``tests.csv``).
PHASE1_TESTS = {t.test: t for t in (
    FilterTest("2_a", "LoG_IBSI", _log(3.0, "zero"), ("LoG", {"sigma": [3.0]}, "log-sigma-3-0-mm-3D"),
               ("log_scale",), "impulse"),
    FilterTest("2_b", "LoG_IBSI", _log(5.0, "mirror"), ("LoG", {"sigma": [5.0]}, "log-sigma-5-0-mm-3D"),
               ("log_scale",), "checkerboard"),
    FilterTest("2_c", "LoG_IBSI", _log(5.0, "mirror", 2), None, ("log_2d",), "checkerboard"),
    FilterTest("5_a_1", "Wavelet_IBSI", _wavelet("db2", "LHL", 1, "zero", False), _plain_wavelet("db2", "LHL", 1),
               (), "impulse"),
    FilterTest("5_a_2", "Wavelet_IBSI", _wavelet("db2", "LHL", 1, "zero", True), _plain_wavelet("db2", "LHL", 1),
               ("rotation",), "impulse"),
    FilterTest("6_a_1", "Wavelet_IBSI", _wavelet("coif1", "HHL", 1, "periodic", False),
               _plain_wavelet("coif1", "HHL", 1), (), "sphere"),
    FilterTest("6_a_2", "Wavelet_IBSI", _wavelet("coif1", "HHL", 1, "periodic", True),
               _plain_wavelet("coif1", "HHL", 1), ("rotation",), "sphere"),
    FilterTest("7_a_1", "Wavelet_IBSI", _wavelet("haar", "LLL", 2, "mirror", True), _plain_wavelet("haar", "LLL", 2),
               ("a_trous", "rotation"), "checkerboard"),
    FilterTest("7_a_2", "Wavelet_IBSI", _wavelet("haar", "HHH", 2, "mirror", True), _plain_wavelet("haar", "HHH", 2),
               ("a_trous", "rotation"), "checkerboard"),
)}

#: The phase-2 configurations (``tests.csv``): A without interpolation and with 2D filters, B on the 1 mm IBSI
#: grid (cubic spline) with 3D filters; every one re-segmented to [-1000, 400] HU.
PHASE2_CONFIGS = {t.test: t for t in (
    FilterTest("1.A", None, {}, ("Original", {}, "original"), ()),
    FilterTest("1.B", None, {}, ("Original", {}, "original"), ("ibsi1",)),
    FilterTest("3.A", "LoG_IBSI", _log(1.5, "mirror", 2), None, ("log_2d",)),
    FilterTest("3.B", "LoG_IBSI", _log(1.5, "mirror"), ("LoG", {"sigma": [1.5]}, "log-sigma-1-5-mm-3D"),
               ("ibsi1", "log_scale")),
    FilterTest("6.A", "Wavelet_IBSI", _wavelet("db3", "LH", 1, "mirror", True), _plain_wavelet("db3", "LH", 1),
               ("rotation",)),
    FilterTest("6.B", "Wavelet_IBSI", _wavelet("db3", "LLH", 1, "mirror", True), _plain_wavelet("db3", "LLH", 1),
               ("ibsi1", "rotation")),
    FilterTest("7.A", "Wavelet_IBSI", _wavelet("db3", "HH", 2, "mirror", True), _plain_wavelet("db3", "HH", 2),
               ("a_trous", "rotation")),
    FilterTest("7.B", "Wavelet_IBSI", _wavelet("db3", "HHH", 2, "mirror", True), _plain_wavelet("db3", "HHH", 2),
               ("ibsi1", "a_trous", "rotation")),
)}

#: pyradiomics first-order feature -> IBSI 2 statistic tag: the 15 of the 18 IBSI statistics pyradiomics computes.
STATISTICS = {
    "Mean": "stat_mean", "Variance": "stat_var", "Skewness": "stat_skew", "Kurtosis": "stat_kurt",
    "Median": "stat_median", "Minimum": "stat_min", "10Percentile": "stat_p10", "90Percentile": "stat_p90",
    "Maximum": "stat_max", "InterquartileRange": "stat_iqr", "Range": "stat_range",
    "MeanAbsoluteDeviation": "stat_mad", "RobustMeanAbsoluteDeviation": "stat_rmad", "Energy": "stat_energy",
    "RootMeanSquared": "stat_rms",
}

PHASE, TEST, IMPLEMENTATION, ITEM = "phase", "test", "implementation", "item"
REFERENCE, TOLERANCE, DEVIATION, PASS = "reference", "tolerance", "deviation", "pass"
#: The columns of :func:`phase1_compliance` and :func:`phase2_compliance`. Phase 1: one row per test and side,
#: ``item`` "response map", ``value`` the largest voxel difference, ``reference`` the reference map's range,
#: ``deviation`` that difference in % of the range. Phase 2: one row per statistic, ``deviation`` in tolerances.
FILTER_COLUMNS = (PHASE, TEST, IMPLEMENTATION, ITEM, schema.VALUE, REFERENCE, TOLERANCE, DEVIATION, PASS,
                  schema.REASON)
#: Padding (voxels) kept around the ROI when resampling: more than the filters' reach (7.B: 9 voxels), so that
#: every ROI voxel's response is the whole-image one.
_PAD_VOXELS = 16


def _read(path: Path) -> sitk.Image:
    if not path.is_file():
        raise ConfigError(f"{path}: IBSI 2 reference file not found (pass the folder holding phantoms/ and "
                          "response_maps/, from theibsi/data_sets and theibsi/ibsi_2_reference_data)")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ConfigError(f"{path}: cannot read the image ({str(exc).splitlines()[0]})") from None


def _cause(keys: tuple[str, ...]) -> str:
    return "; ".join(_CAUSES[k] for k in keys or ("unexpected",))


def phase1_compliance(data_dir: str | os.PathLike, tests: list[str] | None = None) -> pd.DataFrame:
    """IBSI 2 phase 1: the response maps of the digital phantoms against the consensus maps.

    Parameters
    ----------
    data_dir : str or os.PathLike
        The IBSI 2 reference folder: ``phantoms/<name>/image/<name>.nii.gz`` and
        ``response_maps/<test>-ValidCRM.nii.gz``.
    tests : list of str, optional
        Test ids of :data:`PHASE1_TESTS` (default: all 9).

    Returns
    -------
    DataFrame
        :data:`FILTER_COLUMNS`, one row per test and implementation.

    Raises
    ------
    ConfigError
        A phantom or response map is missing or unreadable, or an unknown test id.
    """
    from radiomics import imageoperations as ops

    make_extractor({})  # pyradiomics' logging set up as for every extraction (its INFO lines go to DEBUG)
    folder = Path(data_dir)
    rows = []
    for test_id in tests or list(PHASE1_TESTS):
        if test_id not in PHASE1_TESTS:
            raise ConfigError(f"unknown IBSI 2 phase-1 test {test_id!r} (known: {', '.join(PHASE1_TESTS)})")
        test = PHASE1_TESTS[test_id]
        phantom = sitk.Cast(_read(folder / "phantoms" / test.phantom / "image" / f"{test.phantom}.nii.gz"),
                            sitk.sitkFloat64)
        reference = sitk.GetArrayFromImage(_read(folder / "response_maps" / f"{test_id}-ValidCRM.nii.gz"))
        value_range = float(reference.max() - reference.min())
        tolerance = PHASE1_TOLERANCE_PCT / 100 * value_range
        harmony_map = filtered_images(phantom, test.image_type, test.settings)[0][0]
        plain_map = None
        if test.pyradiomics is not None:
            image_type, settings, name = test.pyradiomics
            outputs = getattr(ops, f"get{image_type}Image")(phantom, None, **settings)
            plain_map = next(image for image, output, _ in outputs if output == name)
        for side, response in (("pyradiomics", plain_map), ("harmony", harmony_map)):
            if response is None:
                rows.append((1, test_id, side, "response map", math.nan, value_range, tolerance, math.nan, False,
                             _cause(test.causes)))
                continue
            worst = float(np.abs(sitk.GetArrayViewFromImage(response) - reference).max())
            ok = worst <= tolerance
            reason = "" if ok else _cause(test.causes if side == "pyradiomics" else ("harmony",))
            rows.append((1, test_id, side, "response map", worst, value_range, tolerance,
                         100 * worst / value_range, ok, reason))
    return pd.DataFrame(rows, columns=list(FILTER_COLUMNS))


def phase2_reference_values() -> pd.DataFrame:
    """The IBSI 2 phase-2 consensus values of the configurations in :data:`PHASE2_CONFIGS` (package data).

    Returns
    -------
    DataFrame
        ``filter_id, feature, feature_tag, consensus_value, tolerance``.

    Examples
    --------
    >>> ref = phase2_reference_values()
    >>> ref.loc[(ref.filter_id == "3.B") & (ref.feature_tag == "stat_mean"), "consensus_value"].item()
    -2.94
    """
    with resources.files("harmony.gate").joinpath("data", "ibsi2_phase2_reference_values.csv").open("rb") as f:
        return pd.read_csv(f, sep=";")


def phase2_params(config: str, implementation: str = "harmony") -> dict[str, Any]:
    """pyradiomics parameters of a phase-2 configuration: harmony's filters in IBSI mode, or plain pyradiomics.

    Parameters
    ----------
    config : str
        A key of :data:`PHASE2_CONFIGS`.
    implementation : {"harmony", "pyradiomics"}, default "harmony"
        harmony: the ``LoG_IBSI`` / ``Wavelet_IBSI`` image type and the ``ibsi`` section; pyradiomics: its own
        image type and processing.

    Returns
    -------
    dict or None
        Parameters for :func:`harmony.extraction.adapter.extract` (first-order features), or None when
        pyradiomics cannot express the configuration.

    Raises
    ------
    ConfigError
        An unknown configuration or implementation.

    Examples
    --------
    >>> p = phase2_params("7.B")
    >>> p["imageType"]["Wavelet_IBSI"]["bands"], p["setting"]["resampledPixelSpacing"]
    (['HHH'], [1.0, 1.0, 1.0])
    >>> phase2_params("3.A", "pyradiomics") is None
    True
    """
    if config not in PHASE2_CONFIGS:
        raise ConfigError(f"unknown IBSI 2 phase-2 configuration {config!r} (known: {', '.join(PHASE2_CONFIGS)})")
    test = PHASE2_CONFIGS[config]
    setting: dict[str, Any] = {"label": 1, "binWidth": 25, "minimumROIDimensions": 1, "voxelArrayShift": 0,
                               "resegmentRange": [-1000, 400], "resegmentMode": "absolute"}
    if config.endswith(".B"):
        setting.update(resampledPixelSpacing=[1.0, 1.0, 1.0], interpolator="sitkBSpline", padDistance=_PAD_VOXELS)
    params: dict[str, Any] = {"setting": setting, "featureClass": {"firstorder": list(STATISTICS)}}
    if implementation == "harmony":
        params["imageType"] = {"Original": {}} if test.image_type is None else {test.image_type: test.settings}
        params[IBSI_SECTION] = {}
    elif implementation == "pyradiomics":
        if test.pyradiomics is None:
            return None
        params["imageType"] = {test.pyradiomics[0]: test.pyradiomics[1]}
    else:
        raise ConfigError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
    return params


def _image_name(test: FilterTest, implementation: str) -> str:
    if implementation == "pyradiomics":
        return test.pyradiomics[2]
    if test.image_type is None:
        return "original"
    return image_names(test.image_type, test.settings)[0]


def phase2_compliance(phantom: CtPhantom | str | os.PathLike, configs: list[str] | None = None) -> pd.DataFrame:
    """IBSI 2 phase 2: the intensity statistics of the filtered CT phantom against the consensus values.

    Parameters
    ----------
    phantom : CtPhantom or path
        The IBSI 1 CT phantom, or its folder (:func:`harmony.gate.ibsi_ct.load_ct_phantom`).
    configs : list of str, optional
        Keys of :data:`PHASE2_CONFIGS` (default: all 8).

    Returns
    -------
    DataFrame
        :data:`FILTER_COLUMNS`, one row per configuration, implementation and statistic.

    Raises
    ------
    ConfigError
        The phantom cannot be read, or an unknown configuration.
    """
    if not isinstance(phantom, CtPhantom):
        phantom = load_ct_phantom(phantom)
    reference = phase2_reference_values()
    rows = []
    for config in configs or list(PHASE2_CONFIGS):
        params = {side: phase2_params(config, side) for side in IMPLEMENTATIONS}
        test = PHASE2_CONFIGS[config]
        ref = reference[reference["filter_id"] == config].set_index("feature_tag")
        for side in IMPLEMENTATIONS:
            logger.info("IBSI 2 phase 2: configuration %s, %s", config, side)
            features = {} if params[side] is None else extract(phantom.image, phantom.mask, params[side]).features
            prefix = None if params[side] is None else _image_name(test, side)
            for feature, tag in STATISTICS.items():
                expected, tolerance = float(ref.at[tag, "consensus_value"]), float(ref.at[tag, "tolerance"])
                value = features.get(f"{prefix}_firstorder_{feature}", math.nan)
                ok = math.isfinite(value) and abs(value - expected) <= tolerance
                reason = ""
                if not ok and side == "harmony":
                    reason = _CAUSES["harmony"]
                elif not ok:
                    kurtosis_only = tag == "stat_kurt" and abs(value - 3 - expected) <= tolerance
                    reason = _CAUSES["kurtosis"] if kurtosis_only else _cause(
                        test.causes + (("kurtosis",) if tag == "stat_kurt" else ()))
                deviation = abs(value - expected) / tolerance if math.isfinite(value) else math.nan
                rows.append((2, config, side, tag, value, expected, tolerance, deviation, ok, reason))
    return pd.DataFrame(rows, columns=list(FILTER_COLUMNS))


def filter_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per phase, test and implementation: pass (every item), the worst deviation, the causes.

    Parameters
    ----------
    table : DataFrame
        :func:`phase1_compliance` and/or :func:`phase2_compliance` rows.

    Returns
    -------
    DataFrame
        ``phase, test, implementation, pass, passed, total, worst_deviation, reason``: phase 1 deviations in % of
        the reference range, phase 2 in tolerances.

    Examples
    --------
    >>> rows = pd.DataFrame([(2, "1.A", "harmony", "stat_mean", 1.0, 1.0, 1.0, 0.5, True, "")],
    ...                     columns=list(FILTER_COLUMNS))
    >>> filter_summary(rows)[["test", "pass", "passed", "total"]].to_dict("records")
    [{'test': '1.A', 'pass': True, 'passed': 1, 'total': 1}]
    """
    out = []
    for (phase, test, side), part in table.groupby([PHASE, TEST, IMPLEMENTATION], sort=False):
        reasons = list(dict.fromkeys(cause for r in part[schema.REASON] if r for cause in r.split("; ")))
        out.append({PHASE: phase, TEST: test, IMPLEMENTATION: side, PASS: bool(part[PASS].all()),
                    "passed": int(part[PASS].sum()), "total": len(part),
                    "worst_deviation": float(part[DEVIATION].max()) if part[DEVIATION].notna().any() else math.nan,
                    schema.REASON: "; ".join(reasons)})
    return pd.DataFrame(out)


def _deviation_text(value: float, phase: int) -> str:
    if not math.isfinite(value):
        return "not run"
    return f"{value:.3g}%" if phase == 1 else f"{value:.3g} tol"


def filter_markdown(table: pd.DataFrame) -> str:
    """The IBSI 2 compliance report as Markdown: per test, both implementations side by side, then phase 2's rows.

    Parameters
    ----------
    table : DataFrame
        :func:`phase1_compliance` and/or :func:`phase2_compliance` rows.

    Returns
    -------
    str
    """
    summary = filter_summary(table)
    lines = ["# IBSI 2 compliance of the filters", "",
             (f"Phase 1: a response map passes when every voxel is within {PHASE1_TOLERANCE_PCT:g}% of the reference "
              "map's range (deviation: the largest, in % of the range). Phase 2: a configuration passes when all 15 "
              "intensity statistics pyradiomics computes are within the IBSI tolerance (deviation: the largest, in "
              "tolerances)."), ""]
    for phase, part in summary.groupby(PHASE, sort=False):
        lines += [f"## Phase {phase}", "", "| test | pyradiomics | harmony | cause of the failures |", "|---|---|---|---|"]
        for test, rows in part.groupby(TEST, sort=False):
            cells, causes = {}, []
            for r in rows.to_dict("records"):
                verdict = "pass" if r[PASS] else "FAIL"
                count = f", {r['passed']}/{r['total']}" if phase == 2 else ""
                cells[r[IMPLEMENTATION]] = f"{verdict} ({_deviation_text(r['worst_deviation'], phase)}{count})"
                if r[schema.REASON]:
                    causes.append(f"{r[IMPLEMENTATION]}: {r[schema.REASON]}")
            lines.append(f"| {test} | {cells.get('pyradiomics', '')} | {cells.get('harmony', '')} | "
                         f"{' / '.join(causes)} |")
        lines.append("")
    phase2 = table[table[PHASE] == 2]
    if len(phase2):
        lines += ["## Phase 2 statistics", "",
                  "| configuration | statistic | reference | tolerance | pyradiomics | harmony |", "|---|---|---|---|---|---|"]
        for (test, item), rows in phase2.groupby([TEST, ITEM], sort=False):
            first = rows.iloc[0]
            cells = {r[IMPLEMENTATION]: ("—" if not math.isfinite(r[schema.VALUE]) else f"{r[schema.VALUE]:.6g}")
                     + ("" if r[PASS] else " ✗") for r in rows.to_dict("records")}
            lines.append(f"| {test} | {item} | {first[REFERENCE]:g} | {first[TOLERANCE]:g} | "
                         f"{cells.get('pyradiomics', '')} | {cells.get('harmony', '')} |")
    return "\n".join(lines) + "\n"


def filter_junit(table: pd.DataFrame) -> str:
    """JUnit XML: one testcase per test and implementation; harmony's failures are failures.

    Plain pyradiomics' failures (expected, each with its cause) are skipped testcases, so that CI shows them
    without failing.

    Parameters
    ----------
    table : DataFrame
        :func:`phase1_compliance` and/or :func:`phase2_compliance` rows.

    Returns
    -------
    str
    """
    import xml.etree.ElementTree as ET

    summary = filter_summary(table)
    required = summary[IMPLEMENTATION] == "harmony"
    suite = ET.Element("testsuite", name="harmony gate ibsi filters", tests=str(len(summary)),
                       failures=str(int((required & ~summary[PASS]).sum())), errors="0",
                       skipped=str(int((~required & ~summary[PASS]).sum())))
    for r, req in zip(summary.to_dict("records"), required):
        case = ET.SubElement(suite, "testcase", classname=f"harmony.gate.ibsi2.phase{r[PHASE]}.{r[IMPLEMENTATION]}",
                             name=r[TEST])
        if not r[PASS]:
            message = f"worst deviation {_deviation_text(r['worst_deviation'], r[PHASE])}: {r[schema.REASON]}"
            ET.SubElement(case, "failure" if req else "skipped", message=message).text = message
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_filter_compliance(table: pd.DataFrame, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``ibsi2_filters.csv``, ``ibsi2_filters.md`` and ``ibsi2_junit.xml`` into ``out_dir``.

    Parameters
    ----------
    table : DataFrame
        :func:`phase1_compliance` and/or :func:`phase2_compliance` rows.
    out_dir : str or os.PathLike
        Where to write (created when absent).

    Returns
    -------
    dict of str to pathlib.Path
        ``csv``, ``markdown`` and ``junit``.
    """
    out = Path(out_dir)
    return {"csv": atomic_write(out / "ibsi2_filters.csv", lambda tmp: table.to_csv(tmp, index=False)),
            "markdown": write_text(out / "ibsi2_filters.md", filter_markdown(table)),
            "junit": write_text(out / "ibsi2_junit.xml", filter_junit(table))}
