"""IBSI mode: the IBSI grid, ROI interpolation, combined re-segmentation, bins from the lower bound, corrected
outputs; and that it runs through extract, the shared extraction and the engine, leaving plain mode unchanged."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core.config import validate
from harmony.core.errors import ConfigError
from harmony.extraction.adapter import extract, extraction_params, make_extractor
from harmony.extraction.engine import run_tasks
from harmony.extraction.ibsi import (
    IbsiExtractor,
    bins_from_lower_bound,
    correct_features,
    ibsi_adjustments,
    ibsi_preprocess,
    ibsi_settings,
)
from harmony.extraction.params import merge_params
from harmony.extraction.shared import SharedExtraction
from harmony.gate.ibsi import compliance_table, ibsi_params
from harmony.phantoms import ibsi_digital_phantom
from harmony.workflows.experiment import experiment_schema
from tests.conftest import ENGINE_PARAMS, blob, sitk_image


def _centre(image: sitk.Image) -> np.ndarray:
    """Physical centre of the voxel grid (the middle of the first and last voxel centres)."""
    last = image.TransformContinuousIndexToPhysicalPoint([s - 1.0 for s in image.GetSize()])
    return (np.array(image.GetOrigin()) + np.array(last)) / 2


# -- the IBSI grid ------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(size=st.tuples(*[st.integers(3, 9)] * 3), spacing=st.tuples(*[st.sampled_from([0.5, 0.977, 1.2, 3.0])] * 3),
       target=st.sampled_from([0.8, 1.0, 2.0, 2.5]))
def test_ibsi_grid_has_aligned_centres_and_ceil_size(size, spacing, target):
    rotation = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image = sitk_image(np.zeros(size[::-1]), spacing, origin=(3.0, -7.0, 11.0), direction=rotation)
    mask = sitk_image(np.ones(size[::-1], np.uint8), spacing, origin=(3.0, -7.0, 11.0), direction=rotation)
    out = ibsi_preprocess(image, mask, spacing_mm=(target,) * 3)
    assert out.image.GetSize() == tuple(math.ceil(n * s / target - 1e-9) for n, s in zip(size, spacing))
    np.testing.assert_allclose(_centre(out.image), _centre(image), atol=1e-9)
    assert out.image.GetDirection() == rotation and out.mask.GetSize() == out.image.GetSize()


def test_linear_interpolation_reproduces_a_linear_ramp_at_the_new_centres():
    zyx = np.indices((6, 7, 8)).astype(float)
    ramp = 3.0 * zyx[2] - 2.0 * zyx[1] + 0.5 * zyx[0]  # linear in the index, so in physical space
    image = sitk_image(ramp, (0.8, 1.1, 2.5), origin=(1.0, 2.0, 3.0))
    mask = sitk_image(np.ones(ramp.shape, np.uint8), (0.8, 1.1, 2.5), origin=(1.0, 2.0, 3.0))
    out = ibsi_preprocess(image, mask, spacing_mm=(1.0, 1.0, 1.0), round_intensities=False)
    got = sitk.GetArrayFromImage(out.image)
    # the expected value at each output centre, from its physical point mapped back into the input
    size = out.image.GetSize()
    for idx in [(0, 0, 0), (size[0] // 2, 3, 7), (size[0] - 1, size[1] - 1, size[2] - 1), (2, 5, 1)]:
        point = out.image.TransformIndexToPhysicalPoint(idx)
        x, y, z = np.clip(image.TransformPhysicalPointToContinuousIndex(point), 0, [7, 6, 5])
        assert got[idx[2], idx[1], idx[0]] == pytest.approx(3.0 * x - 2.0 * y + 0.5 * z, abs=1e-9)


def test_same_spacing_changes_nothing_and_rounding_follows_the_input():
    image, mask = blob(0)  # int16: rounded after interpolation
    out = ibsi_preprocess(image, mask, spacing_mm=image.GetSpacing())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out.image), sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out.mask), sitk.GetArrayFromImage(mask))
    coarse = ibsi_preprocess(image, mask, spacing_mm=(1.7, 1.7, 1.7))
    values = sitk.GetArrayFromImage(coarse.image)
    assert np.array_equal(values, np.round(values)) and [a["step"] for a in coarse.adjustments][:2] == \
        ["interpolate", "round"]
    as_float = ibsi_preprocess(sitk.Cast(image, sitk.sitkFloat64) + 0.25, mask, spacing_mm=(1.7, 1.7, 1.7))
    assert "round" not in [a["step"] for a in as_float.adjustments]


def test_roi_is_interpolated_linearly_with_the_partial_volume_threshold():
    # a half-space mask x < 4 on 1 mm voxels, resampled to 3 mm: the linear ROI value at x is known
    mask_arr = np.zeros((3, 3, 12), np.uint8)
    mask_arr[..., :4] = 1
    image = sitk_image(np.zeros(mask_arr.shape), (1.0, 1.0, 1.0))
    mask = sitk_image(mask_arr, (1.0, 1.0, 1.0))
    for threshold in (0.2, 0.5, 0.9):
        out = ibsi_preprocess(image, mask, spacing_mm=(3.0, 1.0, 1.0), roi_threshold=threshold)
        got = sitk.GetArrayFromImage(out.mask)[0, 0]
        xs = np.array([out.mask.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(len(got))])
        expected = np.clip(4.0 - xs, 0, 1) >= threshold  # linear ROI between centres 3 (inside) and 4 (outside)
        np.testing.assert_array_equal(got.astype(bool), expected)


def test_crop_to_the_roi_box_keeps_the_grid_and_values():
    image, mask = blob(2)
    whole = ibsi_preprocess(image, mask, spacing_mm=(0.7, 0.7, 0.7), resegment_range=(0, 400), outlier_sigma=3)
    box = ibsi_preprocess(image, mask, spacing_mm=(0.7, 0.7, 0.7), resegment_range=(0, 400), outlier_sigma=3,
                          pad_voxels=2)
    assert np.prod(box.image.GetSize()) < np.prod(whole.image.GetSize())
    start = whole.image.TransformPhysicalPointToIndex(box.image.GetOrigin())
    crop = sitk.RegionOfInterest(whole.image, box.image.GetSize(), start)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(crop), sitk.GetArrayFromImage(box.image))
    assert sitk.GetArrayFromImage(whole.mask).sum() == sitk.GetArrayFromImage(box.mask).sum()
    assert box.resegment_range == whole.resegment_range


# -- re-segmentation and bins -------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lower=st.integers(-200, 0), sigma=st.sampled_from([None, 1.0, 2.0, 3.0]))
def test_range_then_outlier_resegmentation(seed, lower, sigma):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(0, 100, (4, 5, 6)))
    roi = rng.random(values.shape) < 0.7
    roi[0, 0, 0] = True
    image, mask = sitk_image(values), sitk_image(roi.astype(np.uint8))
    if not ((values[roi] >= lower) & (values[roi] <= 150)).any():
        return
    out = ibsi_preprocess(image, mask, resegment_range=(lower, 150), outlier_sigma=sigma)
    inside = roi & (values >= lower) & (values <= 150)
    if sigma is not None:
        mean, sd = values[inside].mean(), values[inside].std()
        inside &= np.abs(values - mean) <= sigma * sd + 1e-9
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out.intensity_mask).astype(bool), inside)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out.mask).astype(bool), roi)  # morphology untouched
    low, high = out.resegment_range
    assert ((values[roi] >= low) & (values[roi] <= high) == inside[roi]).all()


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(-990, 400), min_size=1, max_size=40), width=st.sampled_from([1, 2.5, 25]))
def test_fixed_bin_size_counts_from_the_lower_bound(values, width):
    from radiomics import imageoperations

    x = np.array(values, float)
    plain = imageoperations.getBinEdges(x, binWidth=width)
    with bins_from_lower_bound(-1000.0):
        edges = imageoperations.getBinEdges(x, binWidth=width)
        with bins_from_lower_bound(None):
            from_min = imageoperations.getBinEdges(x, binWidth=width)
    np.testing.assert_array_equal(np.digitize(x, edges), np.floor((x + 1000.0) / width).astype(int) + 1)
    np.testing.assert_array_equal(np.digitize(x, from_min), np.floor((x - x.min()) / width).astype(int) + 1)
    np.testing.assert_array_equal(imageoperations.getBinEdges(x, binWidth=width), plain)  # outside: pyradiomics'


def test_corrected_outputs():
    features = {"original_firstorder_Kurtosis": 4.5, "original_shape_MajorAxisLength": 10.0,
                "original_shape_Elongation": 0.5, "original_glcm_ClusterTendency": 7.0,
                "original_glcm_DifferenceAverage": 1.5, "original_firstorder_Uniformity": 0.25,
                "original_gldm_DependenceEntropy": 3.0, "log-sigma-1-0-mm-3D_firstorder_Kurtosis": 3.0}
    out = correct_features(features, n_voxels=5)
    assert out["original_firstorder_Kurtosis"] == 1.5 and out["log-sigma-1-0-mm-3D_firstorder_Kurtosis"] == 0.0
    assert out["original_shape_MajorAxisLength"] == pytest.approx(10.0 * math.sqrt(5 / 4))
    assert out["original_shape_Elongation"] == 0.5
    assert (out["original_glcm_SumVariance"], out["original_glcm_Dissimilarity"]) == (7.0, 1.5)
    assert out["original_gldm_GrayLevelNonUniformityNormalized"] == 0.25
    assert out["original_gldm_DependencePercentage"] == 1.0
    assert "log-sigma-1-0-mm-3D_glcm_SumVariance" not in out


# -- settings ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, fragment", [
    ({"ibsi": {"rounding": True}}, "unknown key 'rounding'"),
    ({"setting": {"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkLanczosWindowedSinc"}, "ibsi": {}},
     "interpolator must be one of"),
    ({"setting": {"resegmentRange": [0, 1], "resegmentMode": "relative"}, "ibsi": {}}, "no 'relative'"),
    ({"setting": {"resegmentRange": [-3, 3], "resegmentMode": "sigma"}, "ibsi": {"outlier_sigma": 3}}, "given twice"),
    ({"ibsi": {"roi_threshold": 0}}, "roi_threshold must be in (0, 1]"),
])
def test_bad_ibsi_settings_are_named(params, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        make_extractor(params)
    assert fragment in str(info.value)


def test_settings_and_adjustments_come_from_the_parameters():
    params = {"setting": {"resampledPixelSpacing": [2, 2, 0], "interpolator": "sitkLinear", "binWidth": 25,
                          "resegmentRange": [-1000, 400], "resegmentShape": True}, "ibsi": {"outlier_sigma": 3}}
    s = ibsi_settings(params)
    assert (s.spacing_mm, s.interpolator, s.resegment_range, s.outlier_sigma, s.round_intensities) == \
        ((2.0, 2.0, 0.0), "sitkLinear", (-1000.0, 400.0), 3.0, "auto")
    text = " | ".join(ibsi_adjustments(params))
    for fragment in ("IBSI grid", "ROI interpolated linearly", "3.0 SD after the range",
                     "from the re-segmentation lower bound", "resegmentShape set to false", "excess kurtosis", "N-1"):
        assert fragment in text
    extractor = make_extractor(params)
    assert isinstance(extractor, IbsiExtractor)
    assert extractor.settings.get("resampledPixelSpacing") is None and not extractor.settings["resegmentShape"]


def test_experiment_standard_switches_ibsi_mode_on():
    section = {"settings": {"setting": {"binWidth": 10}}, "standard": "ibsi", "ibsi": {"round_intensities": False}}
    config = validate({"extraction": section}, experiment_schema())
    assert extraction_params(config) == {"setting": {"binWidth": 10}, "ibsi": {"round_intensities": False}}
    default = validate({"extraction": {"settings": section["settings"]}}, experiment_schema())
    assert default["extraction"]["standard"] == "pyradiomics" and "ibsi" not in extraction_params(default)
    with pytest.raises(ConfigError, match="standard"):
        validate({"extraction": {"standard": "ibsi2"}}, experiment_schema())


# -- the digital phantom and plain mode --------------------------------------------------------------------

def test_digital_phantom_ibsi_mode_109_plain_101():
    image, mask = ibsi_digital_phantom()
    plain = extract(image, mask, ibsi_params()).features
    ibsi = extract(image, mask, {**ibsi_params(), "ibsi": {}}).features
    assert int(compliance_table(plain, 74)["pass"].sum()) == 101
    table = compliance_table(ibsi, 74)
    assert int(table["pass"].sum()) == 109, table.loc[~table["pass"], ["feature", "value", "reference"]]
    assert set(ibsi) - set(plain) == {f"original_{f}" for f in (
        "glcm_SumVariance", "glcm_Dissimilarity", "gldm_GrayLevelNonUniformityNormalized",
        "gldm_DependencePercentage")}
    # plain mode after IBSI mode ran in this process (its bin-edge hook installed): bit for bit the same
    assert extract(image, mask, ibsi_params()).features == plain
    assert type(make_extractor(ibsi_params())).__name__ == "RadiomicsFeatureExtractor"


def test_only_requested_deprecated_features_and_no_added_sources():
    image, mask = ibsi_digital_phantom()
    params = {"setting": {"binWidth": 1, "minimumROIDimensions": 1},
              "featureClass": {"glcm": ["SumVariance"], "gldm": ["GrayLevelNonUniformityNormalized"]}, "ibsi": {}}
    got = extract(image, mask, params).features
    assert sorted(got) == ["original_glcm_SumVariance", "original_gldm_GrayLevelNonUniformityNormalized"]


# -- everywhere extraction runs ---------------------------------------------------------------------------

IBSI_ENGINE = merge_params(ENGINE_PARAMS, {"setting": {"resegmentRange": [0, 1000]}, "ibsi": {"outlier_sigma": 2}})


def test_shared_extraction_in_ibsi_mode_equals_a_single_extraction():
    image, mask = blob(3)
    masks = [sitk.BinaryErode(mask, [1, 1, 0]), mask, sitk.BinaryDilate(mask, [1, 1, 1])]
    resampled = merge_params(IBSI_ENGINE, {"setting": {"resampledPixelSpacing": [1.5, 1.5, 1.5],
                                                       "interpolator": "sitkLinear"}})
    params = [IBSI_ENGINE, IBSI_ENGINE, merge_params(IBSI_ENGINE, {"setting": {"binWidth": 5}}), resampled]
    shared = SharedExtraction(image, [*masks, mask], params, label=1)
    assert shared.shared == [True, True, True, False]
    for m, p, got in zip([*masks, mask], params, shared.run()):
        assert not isinstance(got, Exception), got
        expected = extract(image, m, p, label=1).features
        assert list(got) == list(expected) and got == expected  # bit for bit
    assert got != extract(image, mask, merge_params(ENGINE_PARAMS, {"setting": resampled["setting"]})).features


def test_engine_runs_ibsi_mode_and_records_it(engine_cohort, tmp_path):
    run = run_tasks(engine_cohort.iloc[:1], None, IBSI_ENGINE, tmp_path, executor="serial", progress=False)
    assert run.failed == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["standard"] == "ibsi"
    assert any("outlier re-segmentation" in a for a in manifest["ibsi_adjustments"])
    case = engine_cohort.iloc[0]
    expected = extract(case["image"], case["mask"], IBSI_ENGINE).features
    got = dict(zip(run.features["feature"], run.features["value"]))
    assert got == expected


def test_harmony_extract_runs_ibsi_mode_from_the_command_line(engine_cohort, tmp_path):
    from pathlib import Path

    from harmony.cli import main

    params = tmp_path / "params.json"
    params.write_text(json.dumps({k: v for k, v in ENGINE_PARAMS.items() if k != "imageType"}))
    cases = Path(engine_cohort["image"].iloc[0]).parent / "cases.csv"
    out = tmp_path / "run"
    assert main(["extract", str(cases), "--params", str(params), "--out", str(out), "--executor", "serial",
                 "--quiet", "--set", "ibsi={}"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["standard"] == "ibsi" and manifest["config"]["params"]["ibsi"] == {}
    assert "excess kurtosis" in " ".join(manifest["ibsi_adjustments"])
