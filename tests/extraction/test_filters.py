"""The IBSI 2 filters: invariants of the array functions, and the image types in pyradiomics and the engine."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harmony.core.errors import ConfigError
from harmony.extraction.adapter import extract, make_extractor
from harmony.extraction.engine import run_tasks
from harmony.extraction.ibsi_filters import (
    log_ibsi,
    right_angle_rotations,
    wavelet_ibsi,
    wavelet_kernel,
)
from harmony.extraction.ibsi_image_types import filter_spec, image_names
from harmony.extraction.shared import SharedExtraction, extraction_parts
from harmony.perturb.design import expand_design
from tests.conftest import blob, write_cases_csv

BOUNDARIES = ("mirror", "nearest", "zero", "periodic")
small = arrays(np.float64, st.tuples(st.integers(2, 7), st.integers(2, 7), st.integers(2, 7)),
               elements=st.floats(-1000, 1000, allow_nan=False, allow_subnormal=False))
cubes = st.integers(2, 6).flatmap(lambda n: arrays(np.float64, (n, n, n),
                                                   elements=st.floats(-1000, 1000, allow_subnormal=False)))
wavelets = st.sampled_from(["haar", "db2", "coif1", "db3"])


def _rotate(array: np.ndarray, permutation, flipped) -> np.ndarray:
    rotated = np.transpose(array, permutation)
    return np.flip(rotated, flipped) if flipped else rotated


def _unrotate(array: np.ndarray, permutation, flipped) -> np.ndarray:
    return np.transpose(np.flip(array, flipped) if flipped else array, np.argsort(permutation))


# -- the array functions ----------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(value=st.floats(-1e4, 1e4, allow_subnormal=False), sigma=st.floats(1.0, 4.0),
       boundary=st.sampled_from(["mirror", "nearest", "periodic"]), dimensions=st.sampled_from([2, 3]))
def test_log_of_a_constant_image_is_zero_up_to_the_truncated_kernel(value, sigma, boundary, dimensions):
    # with a boundary that continues the constant, every voxel sees the kernel's sum times the value: 0 for the
    # continuous LoG, below 2e-3 for the sampled kernel truncated at 4 sigma when sigma >= 1 voxel
    response = log_ibsi(np.full((5, 9, 9), value), (1.0, 1.0, 1.0), sigma, boundary=boundary, dimensions=dimensions)
    assert np.ptp(response) <= 1e-9 * max(abs(value), 1)
    assert np.abs(response).max() <= 2e-3 * abs(value) + 1e-9


@settings(max_examples=25, deadline=None)
@given(a=small, factor=st.floats(-10, 10, allow_subnormal=False), sigma=st.floats(0.5, 3.0),
       boundary=st.sampled_from(BOUNDARIES))
def test_log_is_linear(a, factor, sigma, boundary):
    b = np.roll(a, 1, axis=0)
    combined = log_ibsi(factor * a + b, (2.0, 1.0, 1.0), sigma, boundary=boundary)
    separate = factor * log_ibsi(a, (2.0, 1.0, 1.0), sigma, boundary=boundary) + log_ibsi(b, (2.0, 1.0, 1.0), sigma,
                                                                                         boundary=boundary)
    np.testing.assert_allclose(combined, separate, atol=1e-9 * (1 + np.abs(a).max() * (1 + abs(factor))))


def test_log_impulse_response_is_the_ibsi_kernel():
    impulse = np.zeros((21, 21, 21))
    impulse[10, 10, 10] = 1.0
    s = 1.5  # 3 mm at 2 mm voxels
    response = log_ibsi(impulse, (2.0, 2.0, 2.0), 3.0, boundary="zero")
    k = np.arange(-10, 11)
    z, y, x = np.meshgrid(k, k, k, indexing="ij")
    r2 = x ** 2 + y ** 2 + z ** 2
    kernel = -(1 / s ** 2) * (1 / (s * np.sqrt(2 * np.pi))) ** 3 * (3 - r2 / s ** 2) * np.exp(-r2 / (2 * s ** 2))
    kernel[np.abs(z) > 6] = kernel[np.abs(y) > 6] = kernel[np.abs(x) > 6] = 0  # 1 + 2 floor(4 s + 0.5) = 13 taps
    np.testing.assert_allclose(response, kernel, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(a=small, wavelet=wavelets, level=st.integers(1, 2))
def test_periodic_wavelet_bands_hold_2_to_the_d_times_the_energy(a, wavelet, level):
    """Orthonormal filters with |L|^2 + |H|^2 = 2: the 8 undecimated bands of a level hold 8 times the energy of
    what the level filters (the image at level 1, the level-1 LLL band at level 2)."""
    source = a if level == 1 else wavelet_ibsi(a, wavelet, "LLL", boundary="periodic")
    energy = sum((wavelet_ibsi(a, wavelet, "".join(b), level=level, boundary="periodic") ** 2).sum()
                 for b in itertools.product("LH", repeat=3))
    assert np.isclose(energy, 8 * (source ** 2).sum(), rtol=1e-9, atol=1e-6)


def test_level_two_is_the_a_trous_scheme():
    kernel = wavelet_kernel("db2", "H", level=2)
    taps = np.append(np.array(__import__("pywt").Wavelet("db2").dec_hi), 0.0)
    assert kernel.size == 2 * taps.size - 1 and np.array_equal(kernel[::2], taps) and not kernel[1::2].any()


def test_there_are_24_proper_right_angle_rotations_in_3d_and_4_in_plane():
    for dimensions, count in ((3, 24), (2, 4)):
        rotations = right_angle_rotations(dimensions)
        assert len(rotations) == count and rotations[0] == ((0, 1, 2), ())
        probe = np.arange(24.0).reshape(2, 3, 4) if dimensions == 3 else np.arange(8.0).reshape(1, 2, 4)
        cube = np.random.default_rng(0).normal(size=(3, 3, 3))
        assert len({_rotate(cube, *r).tobytes() for r in rotations}) == count  # all distinct
        for permutation, flipped in rotations:
            matrix = np.eye(3)[list(permutation)]
            for axis in flipped:
                matrix[axis] *= -1
            assert np.isclose(np.linalg.det(matrix), 1.0)  # a rotation, not a reflection
            assert np.array_equal(_unrotate(_rotate(probe, permutation, flipped), permutation, flipped), probe)


@settings(max_examples=20, deadline=None)
@given(a=small, wavelet=wavelets, band=st.sampled_from(["LLH", "HHL", "LHL", "HHH", "LH", "HH"]),
       level=st.integers(1, 2), boundary=st.sampled_from(BOUNDARIES))
def test_rotation_invariance_is_the_average_of_rotate_filter_rotate_back(a, wavelet, band, level, boundary):
    dimensions = len(band)
    expected = np.mean([_unrotate(wavelet_ibsi(np.ascontiguousarray(_rotate(a, *r)), wavelet, band, level=level,
                                               boundary=boundary), *r)
                        for r in right_angle_rotations(dimensions)], axis=0)
    got = wavelet_ibsi(a, wavelet, band, level=level, boundary=boundary, rotation_invariant=True)
    np.testing.assert_allclose(got, expected, atol=1e-9 * (1 + np.abs(a).max()))


@settings(max_examples=20, deadline=None)
@given(a=cubes, wavelet=wavelets, band=st.sampled_from(["LLH", "HLH", "HHH"]), boundary=st.sampled_from(BOUNDARIES),
       rotation=st.sampled_from(right_angle_rotations(3)[1:]))
def test_the_rotation_invariant_response_of_a_rotated_image_is_the_rotated_response(a, wavelet, band, boundary,
                                                                                  rotation):
    response = wavelet_ibsi(a, wavelet, band, boundary=boundary, rotation_invariant=True)
    rotated = wavelet_ibsi(np.ascontiguousarray(_rotate(a, *rotation)), wavelet, band, boundary=boundary,
                           rotation_invariant=True)
    np.testing.assert_allclose(rotated, _rotate(response, *rotation), atol=1e-9 * (1 + np.abs(a).max()))


def test_a_90_degree_in_plane_rotation_commutes_with_the_2d_filters():
    a = np.random.default_rng(1).normal(size=(3, 9, 9))
    for filtered in (lambda x: wavelet_ibsi(x, "db3", "LH", boundary="mirror", rotation_invariant=True),
                     lambda x: log_ibsi(x, (3.0, 1.0, 1.0), 1.5, dimensions=2)):
        np.testing.assert_allclose(filtered(np.rot90(a, axes=(1, 2)).copy()), np.rot90(filtered(a), axes=(1, 2)),
                                   atol=1e-12)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: log_ibsi(np.zeros((3, 3, 3)), (1, 1, 1), 0.0), "sigma_mm must be > 0, got 0.0"),
    (lambda: log_ibsi(np.zeros((3, 3, 3)), (1, 1, 1), 1.0, boundary="reflect"), "boundary must be one of"),
    (lambda: log_ibsi(np.zeros((3, 3, 3)), (1, 0, 1), 1.0), "spacing_zyx must be 3 positive floats"),
    (lambda: wavelet_ibsi(np.zeros((3, 3, 3)), "haar", "LLX"), "band must be 2 or 3 letters"),
    (lambda: wavelet_ibsi(np.zeros((3, 3, 3)), "nope", "LLL"), "wavelet must be a discrete pywt wavelet"),
    (lambda: wavelet_ibsi(np.zeros((3, 3, 3)), "haar", "LLL", level=0), "level must be an integer >= 1"),
])
def test_bad_arguments_are_named_with_their_value(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


# -- the image types in pyradiomics, the shared extraction and the engine -------------------------------------

FILTER_PARAMS = {"setting": {"binWidth": 10, "label": 1},
                 "imageType": {"LoG_IBSI": {"sigma": [1.0, 2.0], "dimensions": 2},
                               "Wavelet_IBSI": {"wavelet": "db2", "level": [1, 2], "bands": ["LLH", "HHH"],
                                                "rotationInvariant": True, "binWidth": 2},
                               "Original": {}},
                 "featureClass": {"firstorder": ["Mean", "Maximum"], "glcm": ["Contrast"]}}


def test_features_are_the_filters_responses_in_the_mask_and_their_names_say_the_filter():
    image, mask = blob(4)
    features = extract(image, mask, FILTER_PARAMS).features
    array, spacing = sitk.GetArrayFromImage(image).astype(float), image.GetSpacing()[::-1]
    inside = sitk.GetArrayFromImage(mask) == 1
    expected = {
        "ibsi-log-sigma-1-0-mm-2D-mirror": log_ibsi(array, spacing, 1.0, dimensions=2),
        "ibsi-log-sigma-2-0-mm-2D-mirror": log_ibsi(array, spacing, 2.0, dimensions=2),
        "ibsi-wavelet-db2-level2-HHH-mirror-rotinv": wavelet_ibsi(array, "db2", "HHH", level=2,
                                                                  rotation_invariant=True),
    }
    for name, response in expected.items():
        assert features[f"{name}_firstorder_Mean"] == pytest.approx(response[inside].mean(), rel=1e-12)
        assert features[f"{name}_firstorder_Maximum"] == pytest.approx(response[inside].max(), rel=1e-12)
    names = image_names("LoG_IBSI", FILTER_PARAMS["imageType"]["LoG_IBSI"]) + \
        image_names("Wavelet_IBSI", FILTER_PARAMS["imageType"]["Wavelet_IBSI"]) + ["original"]
    assert list(dict.fromkeys(k.rsplit("_", 2)[0] for k in features)) == names  # the parameter file's order
    assert list(make_extractor(FILTER_PARAMS).enabledImagetypes) == ["LoG_IBSI", "Wavelet_IBSI", "Original"]


def test_an_ibsi_image_type_takes_pyradiomics_settings_of_its_own():
    image, mask = blob(5)
    per_type = extract(image, mask, FILTER_PARAMS).features
    glcm = "ibsi-wavelet-db2-level1-LLH-mirror-rotinv_glcm_Contrast"
    alone = {**FILTER_PARAMS, "imageType": {"Wavelet_IBSI": {**FILTER_PARAMS["imageType"]["Wavelet_IBSI"],
                                                             "binWidth": 10}}}
    assert per_type[glcm] != extract(image, mask, alone).features[glcm]  # binWidth 2 was applied to it alone


@pytest.mark.parametrize(("image_type", "settings", "message"), [
    ("LoG_IBSI", {}, "imageType.LoG_IBSI.sigma must be a list of numbers > 0 (mm), got None"),
    ("LoG_IBSI", {"sigma": [1], "boundary": "reflect"}, "imageType.LoG_IBSI.boundary must be mirror | nearest"),
    ("LoG_IBSI", {"sigma": [1], "dimensions": 1}, "imageType.LoG_IBSI.dimensions must be 3 or 2"),
    ("Wavelet_IBSI", {"bands": ["LL"]}, "imageType.Wavelet_IBSI.bands must be a list of 3-letter bands"),
    ("Wavelet_IBSI", {"dimensions": 2, "bands": ["LLH"]}, "imageType.Wavelet_IBSI.bands must be a list of 2-letter"),
    ("Wavelet_IBSI", {"wavelet": "gaus1"}, "imageType.Wavelet_IBSI.wavelet must be a discrete pywt wavelet"),
    ("Wavelet_IBSI", {"level": [1, 0]}, "imageType.Wavelet_IBSI.level must be an integer >= 1"),
    ("Wavelet_IBSI", {"rotationInvariant": "yes"}, "imageType.Wavelet_IBSI.rotationInvariant must be true or false"),
    ("Wavelet_IBSI", {"binWidth": -1}, "imageType.Wavelet_IBSI: pyradiomics rejected its settings"),
])
def test_bad_filter_settings_are_one_line_config_errors(image_type, settings, message):
    with pytest.raises(ConfigError) as error:
        make_extractor({"imageType": {image_type: settings}}, source="params.yaml")
    assert str(error.value).startswith(f"params.yaml: {message}") and "\n" not in str(error.value)


def test_filter_spec_fills_the_ibsi_defaults():
    assert filter_spec("Wavelet_IBSI", None) == {
        "wavelet": "coif1", "level": [1], "bands": ["".join(b) for b in itertools.product("LH", repeat=3)],
        "boundary": "mirror", "rotationInvariant": False, "dimensions": 3}


def test_shared_extraction_of_ibsi_filters_is_bit_identical_to_single_extractions():
    image, mask = blob(6)
    masks = [sitk.BinaryErode(mask, [1, 1, 0]), mask]
    params = [FILTER_PARAMS, {**FILTER_PARAMS, "setting": {"binWidth": 5, "label": 1}}]
    pairs = [(m, p) for m in masks for p in params]
    assert extraction_parts(params) == [("LoG_IBSI", None), ("Wavelet_IBSI", None), ("Original", None)]
    results = SharedExtraction(image, [m for m, _ in pairs], [p for _, p in pairs]).run()
    for (m, p), got in zip(pairs, results):
        assert got == extract(image, m, p).features


def test_the_engine_extracts_ibsi_filters_bit_identical_to_single_extractions(tmp_path):
    cases = write_cases_csv(tmp_path / "cohort", {"a": blob(7)}, ["site0"])
    variants = expand_design({"grid": [{"erode_dilate": {"distance_mm": [-1.0, 0.0]}}]}, seed=0,
                             base_params=FILTER_PARAMS)
    run = run_tasks(cases, variants, FILTER_PARAMS, tmp_path / "run", executor="serial", progress=False)
    assert (run.done, run.failed) == (2, 0)
    case = cases.iloc[0]
    image, mask = sitk.ReadImage(case["image"]), sitk.ReadImage(case["mask"])
    for v in variants:
        expected = extract(*v.apply(image, mask, case_id="a"), v.apply_settings(FILTER_PARAMS)).features
        rows = run.features[run.features["variant_id"] == v.variant_id]
        assert dict(zip(rows["feature"], rows["value"])) == expected


def test_ibsi_mode_with_ibsi_filters_shares_work_bit_identical_to_single_extractions():
    image, mask = blob(8)
    params = {**FILTER_PARAMS, "setting": {"binWidth": 10, "label": 1, "resegmentRange": [-1000, 1000]}, "ibsi": {}}
    masks = [sitk.BinaryErode(mask, [1, 1, 0]), mask]
    results = SharedExtraction(image, masks, [params, params]).run()
    for m, got in zip(masks, results):
        assert got == extract(image, m, params).features
