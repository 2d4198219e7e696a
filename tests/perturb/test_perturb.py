"""Tests of harmony.perturb: invariants of every perturbation (hypothesis), replay, designs, CLI, lung1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.perturb import (
    SPEC_TYPES,
    BinCount,
    BinWidth,
    Contour,
    ErodeDilate,
    Intensity,
    Noise,
    PerturbationError,
    Resample,
    Rotate,
    Translate,
    Volume,
    estimate_noise,
    ops,
    spec_from_dict,
)
from harmony.perturb.design import DESIGN, expand_design
from harmony.perturb.specs import FAMILIES, TARGETS
from harmony.perturb.variants import (
    Variant,
    case_rng,
    iter_variants,
    variants_from_table,
    variants_table,
)
from tests.conftest import ROOT, ball_case, voxels

FAST = settings(deadline=None, max_examples=12)


def roi_of(img, label=1):
    return voxels(img) == label


def same_geometry(a, b):
    return (np.allclose(a.GetSpacing(), b.GetSpacing()) and np.allclose(a.GetOrigin(), b.GetOrigin())
            and np.allclose(a.GetDirection(), b.GetDirection()) and a.GetSize() == b.GetSize())


def bit_identical(a, b):
    return a.GetPixelID() == b.GetPixelID() and voxels(a).tobytes() == voxels(b).tobytes()


def within_one_voxel(a, b):
    """Every voxel of each mask lies within one voxel (26-neighbourhood) of the other."""
    ball = np.ones((3, 3, 3), bool)
    return (not (a & ~ndimage.binary_dilation(b, ball)).any()) and not (b & ~ndimage.binary_dilation(a, ball)).any()


# -- specs -----------------------------------------------------------------------------------------------

def test_every_kind_declares_family_target_and_round_trips():
    examples = [Noise(level=2.0, seed=3), Intensity(scale=1.1, offset=-5), Resample(spacing_mm=2.0),
                Rotate(angle_deg=10, axis="x"), Translate(fraction=[0.5, 0, 0]), ErodeDilate(distance_mm=-1),
                Volume(fraction=1.2), Contour(seed=4), BinWidth(width=10), BinCount(count=32)]
    assert {type(s).kind for s in examples} == set(SPEC_TYPES)
    for spec in examples:
        assert spec.family in FAMILIES and spec.target in TARGETS
        d = spec.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert spec_from_dict(d) == spec
    # equal parameters give equal specs whatever their spelling: 10 == 10.0, "z" == [0, 0, 1]
    assert BinWidth(width=10) == BinWidth(width=10.0)
    assert Rotate(angle_deg=5, axis="z") == Rotate(angle_deg=5.0, axis=[0, 0, 1])
    assert Resample(spacing_mm=2).spacing_mm == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("make, message", [
    (lambda: Noise(level=-1.0), "noise.level: must be >= 0.0, got -1.0"),
    (lambda: Rotate(angle_deg=5, axis="w"), "rotate.axis"),
    (lambda: Translate(fraction=[2.0, 0, 0]), "translate.fraction: must be <= 1.0"),
    (lambda: Contour(keep_above=0.5, drop_below=0.5), "drop_below (0.5) must be < keep_above (0.5)"),
    (lambda: spec_from_dict({"kind": "blur"}), "unknown perturbation kind 'blur'"),
    (lambda: spec_from_dict({"kind": "noise", "level": 1.0, "sigma": 2}), "unknown parameter(s) ['sigma']"),
    (lambda: Variant.from_params("not json"), "not JSON"),
])
def test_bad_specs_name_the_parameter(make, message):
    with pytest.raises(PerturbationError) as err:
        make()
    assert message in str(err.value)


def test_zero_levels_are_identities_and_dropped():
    image, mask = ball_case()
    for spec in (Noise(level=0.0, seed=1), Rotate(angle_deg=0), Translate(fraction=0.0), ErodeDilate(distance_mm=0),
                 Volume(fraction=1.0), Intensity()):
        assert spec.is_identity
        variant = Variant((spec,))
        assert variant.variant_id == schema.ORIGINAL and variant.kind == schema.ORIGINAL and variant.seed == 0
        out_image, out_mask = variant.apply(image, mask, case_id="c")
        assert out_image is image and out_mask is mask


@FAST
@given(st.integers(0, 2 ** 31), st.sampled_from(["linear", "bspline"]))
def test_zero_rotation_and_translation_applied_change_nothing(seed, interpolator):
    """The resampling machinery itself is exact at zero (not only because identities are dropped)."""
    image, mask = ball_case(seed=seed)
    start = _state(image, mask)
    for spec in (Rotate(angle_deg=0, interpolator=interpolator), Translate(fraction=0, interpolator=interpolator)):
        out = spec.apply_state(start, None)
        np.testing.assert_allclose(out.image, start.image, rtol=1e-5, atol=1e-3)
        assert np.array_equal(out.roi, start.roi)


def _state(image, mask, label=1):
    from harmony.perturb.specs import _start
    return _start(image, mask, case_id="c", label=label)


# -- noise -----------------------------------------------------------------------------------------------

@FAST
@given(st.floats(0.5, 20.0), st.integers(0, 2 ** 31))
def test_gaussian_noise_of_level_s_adds_variance_s2(level, seed):
    image, mask = ball_case(shape=(32, 32, 32), noise=0.0)
    out, _ = Variant((Noise(level=level, seed=seed),)).apply(image, mask, case_id="c")
    added = (voxels(out).astype(np.float64) - voxels(image)).ravel()
    # sampling error of a variance from n normal draws: s^2 sqrt(2/n) = 0.8% here; allow 5 of them
    assert abs(added.var() / level ** 2 - 1) < 5 * np.sqrt(2 / added.size)
    assert abs(added.mean()) < 5 * level / np.sqrt(added.size)


def test_rician_noise_at_high_snr_adds_variance_s2_and_refuses_negative_images():
    image, mask = ball_case(shape=(32, 32, 32), noise=0.0)
    out, _ = Variant((Noise(level=4.0, distribution="rician", seed=2),)).apply(image, mask, case_id="c")
    added = voxels(out).astype(np.float64) - voxels(image)
    assert abs(added.var() / 16.0 - 1) < 0.05 and (voxels(out) >= 0).all()
    shifted = sitk.Cast(image, sitk.sitkFloat32) - 1000.0
    with pytest.raises(PerturbationError, match="Rician noise needs a magnitude image"):
        Variant((Noise(level=4.0, distribution="rician", seed=2),)).apply(shifted, mask, case_id="c")


def test_rician_noise_on_zero_signal_is_rayleigh():
    """The magnitude of complex Gaussian noise: on a zero image, Rayleigh with mean s sqrt(pi/2) and variance
    (2 - pi/2) s^2 (Gaussian noise would have mean 0)."""
    zeros = sitk.Image([32, 32, 32], sitk.sitkFloat32)
    _, mask = ball_case(shape=(32, 32, 32))
    out = voxels(Variant((Noise(level=4.0, distribution="rician", seed=3),)).apply(zeros, mask, case_id="c")[0])
    out = out.astype(np.float64).ravel()
    assert abs(out.mean() / (4.0 * np.sqrt(np.pi / 2)) - 1) < 0.01
    assert abs(out.var() / ((2 - np.pi / 2) * 16.0) - 1) < 0.05


def test_noise_estimate_is_robust_to_edges_and_relative_noise_uses_it():
    rng = np.random.default_rng(1)
    steps = np.where(np.indices((8, 64, 64))[2] > 31, 1000.0, 0.0)  # a sharp 1000-unit edge
    estimate = estimate_noise(steps + rng.normal(0, 10.0, steps.shape))
    assert abs(estimate / 10.0 - 1) < 0.05
    image, mask = ball_case(shape=(24, 40, 40), noise=8.0, seed=5)
    own = estimate_noise(voxels(image), roi_of(mask), np.array(image.GetSpacing())[::-1])
    assert abs(own / 8.0 - 1) < 0.15
    out, _ = Variant((Noise(level=1.5, relative=True, seed=9),)).apply(image, mask, case_id="c")
    added = voxels(out).astype(np.float64) - voxels(image)
    assert abs(added.std() / (1.5 * own) - 1) < 0.02


def test_stochastic_stream_depends_on_seed_case_and_repeat_only():
    image, mask = ball_case()
    variant = Variant((Noise(level=3.0, seed=11),))
    a = voxels(variant.apply(image, mask, case_id="c1", repeat=0)[0])
    assert np.array_equal(a, voxels(variant.apply(image, mask, case_id="c1", repeat=0)[0]))
    assert not np.array_equal(a, voxels(variant.apply(image, mask, case_id="c1", repeat=1)[0]))
    assert not np.array_equal(a, voxels(variant.apply(image, mask, case_id="c2", repeat=0)[0]))
    assert case_rng(11, "c1", 0).integers(1 << 30) == case_rng(11, "c1", 0).integers(1 << 30)


# -- mask morphology ---------------------------------------------------------------------------------------

spacings = st.tuples(st.floats(0.4, 2.0), st.floats(0.4, 2.0), st.floats(0.5, 4.0))


@FAST
@given(spacings, st.floats(0.1, 3.0), st.integers(0, 1000))
def test_erosion_never_grows_dilation_never_shrinks(spacing, d, seed):
    image, mask = ball_case(spacing=spacing, radius_mm=5.0 * max(spacing), seed=seed)
    roi = roi_of(mask)
    grown = roi_of(Variant((ErodeDilate(distance_mm=d),)).apply(image, mask, case_id="c")[1])
    assert (grown >= roi).all() and grown.sum() >= roi.sum()
    eroded = ops.erode(roi, np.asarray(spacing)[::-1], d)
    assume(eroded.any())  # an erosion that empties the mask is refused: the guard test checks that
    shrunk = roi_of(Variant((ErodeDilate(distance_mm=-d, max_volume_loss=1.0),)).apply(image, mask, case_id="c")[1])
    assert (shrunk <= roi).all() and shrunk.sum() <= roi.sum()
    assert np.array_equal(shrunk, eroded)  # the erosion by d in mm, on the image's own grid


@FAST
@given(spacings, st.floats(0.0, 3.0), st.floats(0.0, 3.0))
def test_volume_after_erosion_is_monotone_in_distance(spacing, d1, d2):
    roi = roi_of(ball_case(spacing=spacing, radius_mm=5.0 * max(spacing))[1])
    sp = np.asarray(spacing)[::-1]
    small, large = sorted((d1, d2))
    a, b = ops.erode(roi, sp, small), ops.erode(roi, sp, large)
    assert (b <= a).all() and b.sum() <= a.sum()
    c, d = ops.dilate(roi, sp, small), ops.dilate(roi, sp, large)
    assert (c <= d).all()


@FAST
@given(st.floats(0.1, 6.0), st.floats(0.05, 0.95))
def test_erosion_guard_holds(d, max_loss):
    image, mask = ball_case(radius_mm=4.0)
    n = int(roi_of(mask).sum())
    spec = ErodeDilate(distance_mm=-d, max_volume_loss=max_loss)
    try:
        out = roi_of(Variant((spec,)).apply(image, mask, case_id="case7")[1])
    except PerturbationError as exc:
        text = str(exc)
        assert "case7" in text and f"erosion by {d:g} mm" in text and "of the mask" in text
        left = ops.erode(roi_of(mask), np.ones(3), d).sum()
        assert 1 - left / n > max_loss
    else:
        assert 1 - out.sum() / n <= max_loss


def test_anisotropic_erosion_is_physical():
    """1 mm on a 0.5 x 0.5 x 3 mm grid removes two in-plane layers and no slice."""
    roi = np.zeros((7, 30, 30), bool)
    roi[1:6, 5:25, 5:25] = True
    out = roi_of(Variant((ErodeDilate(distance_mm=-1.0),)).apply(*_images(roi, (0.5, 0.5, 3.0)), case_id="c")[1])
    expected = np.zeros_like(roi)
    expected[1:6, 7:23, 7:23] = True
    assert np.array_equal(out, expected)
    grown = roi_of(Variant((ErodeDilate(distance_mm=1.0),)).apply(*_images(roi, (0.5, 0.5, 3.0)), case_id="c")[1])
    # in-plane the ball reaches 2 voxels along the axes but misses 3 voxels at each corner (e.g. 1 and 2
    # voxels off both edges: 0.5 * sqrt(1 + 4) = 1.12 mm > 1 mm); across slices (3 mm) it adds nothing
    assert grown[1:6].sum(axis=(1, 2)).tolist() == [24 * 24 - 4 * 3] * 5 and not grown[0].any() and not grown[6].any()


def _images(roi, spacing):
    image = sitk.GetImageFromArray(np.where(roi, 50.0, 0.0).astype(np.float32))
    mask = sitk.GetImageFromArray(roi.astype(np.uint8))
    for img in (image, mask):
        img.SetSpacing(spacing)
    return image, mask


@pytest.mark.parametrize("fraction", [0.5, 0.8, 1.25, 2.0])
def test_volume_adaptation_reaches_the_target_and_nests(fraction):
    image, mask = ball_case(shape=(24, 40, 40), spacing=(0.8, 0.8, 1.5), radius_mm=7.0)
    roi = roi_of(mask)
    out = roi_of(Variant((Volume(fraction=fraction),)).apply(image, mask, case_id="c")[1])
    assert out.sum() == round(fraction * roi.sum())
    assert (out <= roi).all() if fraction < 1 else (out >= roi).all()
    # it follows the surface: every removed (added) voxel is no deeper inside (farther outside) than any kept
    # (any left out) one
    sp = np.asarray(image.GetSpacing())[::-1]
    signed = np.where(roi, -ndimage.distance_transform_edt(roi, sampling=sp),
                      ndimage.distance_transform_edt(~roi, sampling=sp))
    assert signed[out].max() <= signed[~out].min() + 1e-9


# -- geometry ----------------------------------------------------------------------------------------------

@FAST
@given(st.integers(1, 4), st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0.2, 1)),
       st.sampled_from(["linear", "bspline"]))
def test_rotating_by_360_degrees_returns_the_mask_within_one_voxel(n, axis, interpolator):
    image, mask = ball_case(shape=(24, 24, 24), radius_mm=5.0, direction=(0, 1, 0, -1, 0, 0, 0, 0, 1))
    chain = tuple(Rotate(angle_deg=360.0 / n, axis=list(axis), interpolator=interpolator) for _ in range(n))
    out_image, out_mask = Variant(chain).apply(image, mask, case_id="c")
    assert within_one_voxel(roi_of(out_mask), roi_of(mask))
    assert same_geometry(out_image, image) and same_geometry(out_mask, image)


def test_rotation_turns_counter_clockwise_about_the_centroid():
    roi = np.zeros((5, 21, 21), bool)
    roi[2, 10, 10:17] = True  # a bar along +x from (10, 10)
    roi[2, 9:12, 9:12] = True
    out = roi_of(Variant((Rotate(angle_deg=90),)).apply(*_images(roi, (1.0, 1.0, 1.0)), case_id="c")[1])
    assert abs(int(out.sum()) - int(roi.sum())) <= 2
    centre = np.mean(np.nonzero(roi), axis=1)
    np.testing.assert_allclose(np.mean(np.nonzero(out), axis=1), centre, atol=0.5)  # the centroid stays
    tip = np.array(np.nonzero(out)).T[np.argmax(np.linalg.norm(np.array(np.nonzero(out)).T - centre, axis=1))]
    assert tip[1] - centre[1] > 3.5 and abs(tip[2] - centre[2]) < 1  # the bar's tip went from +x to +y


def test_whole_voxel_translation_is_a_shift():
    image, mask = ball_case(noise=0.0)
    out_image, out_mask = Variant((Translate(fraction=[1.0, 0.0, 0.0]),)).apply(image, mask, case_id="c")
    assert np.array_equal(roi_of(out_mask), np.roll(roi_of(mask), 1, axis=2))
    np.testing.assert_allclose(voxels(out_image)[:, :, 5:-5], np.roll(voxels(image), 1, axis=2)[:, :, 5:-5], rtol=1e-6)


@FAST
@given(st.integers(0, 2 ** 31), st.sampled_from(["linear", "bspline"]), st.sampled_from(["nearest", "linear"]),
       st.booleans())
def test_resampling_to_the_same_spacing_changes_intensities_below_1e4(seed, interpolator, rule, back):
    image, mask = ball_case(spacing=(0.7, 0.7, 2.5), radius_mm=4.0, seed=seed)
    spec = Resample(spacing_mm=list(image.GetSpacing()), interpolator=interpolator, mask_rule=rule,
                    back_to_original=back, margin_mm=5.0)
    out_image, out_mask = Variant((spec,)).apply(image, mask, case_id="c")
    if back:
        assert same_geometry(out_image, image)
        reference, ref_mask = voxels(image), roi_of(mask)
    else:  # the ROI's neighbourhood on the (same) grid
        index = image.TransformPhysicalPointToIndex(out_image.GetOrigin())
        size = out_image.GetSize()
        region = tuple(slice(index[i], index[i] + size[i]) for i in (2, 1, 0))
        reference, ref_mask = voxels(image)[region], roi_of(mask)[region]
    change = np.abs(voxels(out_image).astype(np.float64) - reference) / np.abs(reference)
    assert change.max() < 1e-4
    assert np.array_equal(roi_of(out_mask), ref_mask)


def test_resampling_to_a_new_spacing_changes_the_grid_and_keeps_the_volume():
    image, mask = ball_case(shape=(16, 40, 40), spacing=(0.7, 0.7, 2.5), radius_mm=6.0)
    out_image, out_mask = Variant((Resample(spacing_mm=[1.0, 1.0, 1.0]),)).apply(image, mask, case_id="c")
    assert out_image.GetSpacing() == (1.0, 1.0, 1.0) and same_geometry(out_image, out_mask)
    volume = roi_of(mask).sum() * np.prod(image.GetSpacing())
    assert abs(roi_of(out_mask).sum() / volume - 1) < 0.1
    back, back_mask = Variant((Resample(spacing_mm=[1.0, 1.0, 1.0], back_to_original=True),)).apply(
        image, mask, case_id="c")
    assert same_geometry(back, image) and abs(roi_of(back_mask).sum() / roi_of(mask).sum() - 1) < 0.15


def test_intensity_drift_is_exact_and_float_type_is_kept():
    image, mask = ball_case()
    out, out_mask = Variant((Intensity(scale=1.02, offset=-10.0),)).apply(image, mask, case_id="c")
    np.testing.assert_allclose(voxels(out), voxels(image) * np.float32(1.02) - np.float32(10.0), rtol=1e-6)
    assert out.GetPixelID() == sitk.sitkFloat32 and out_mask is mask
    double = sitk.Cast(image, sitk.sitkFloat64)
    assert Variant((Intensity(offset=1.0),)).apply(double, mask, case_id="c")[0].GetPixelID() == sitk.sitkFloat64
    ints = sitk.Cast(image, sitk.sitkInt16)
    assert Variant((Intensity(offset=1.0),)).apply(ints, mask, case_id="c")[0].GetPixelID() == sitk.sitkFloat32


# -- contour randomisation -----------------------------------------------------------------------------------

@FAST
@given(st.integers(0, 2 ** 62))
def test_contour_randomisation_keeps_fully_inside_supervoxels(seed):
    image, mask = ball_case(shape=(16, 36, 36), radius_mm=8.0, noise=20.0)
    spec = Contour(seed=seed, supervoxel_mm3=27.0, keep_above=1.0, drop_below=0.0, closing_mm=1.0)
    out = roi_of(Variant((spec,)).apply(image, mask, case_id="c")[1])
    roi = roi_of(mask)
    where, labels = ops.supervoxels(voxels(image).astype(np.float32), roi, np.ones(3), supervoxel_mm3=27.0,
                                    compactness=spec.compactness, margin_mm=spec.margin_mm)
    overlap = ops.overlap_fractions(labels, roi[where])
    inside = np.isin(labels, np.flatnonzero(overlap == 1.0))
    assert inside.sum() > 100  # the test means something: there are fully inside supervoxels
    assert out[where][inside].all()


def test_contour_randomisation_varies_by_seed_and_stays_near_the_mask():
    image, mask = ball_case(shape=(16, 36, 36), radius_mm=8.0, noise=20.0)
    roi = roi_of(mask)
    masks = [roi_of(Variant((Contour(seed=s, supervoxel_mm3=27.0),)).apply(image, mask, case_id="c")[1])
             for s in range(4)]
    assert len({m.tobytes() for m in masks}) > 1
    for m in masks:
        dice = 2 * (m & roi).sum() / (m.sum() + roi.sum())
        assert dice > 0.7


def test_contour_randomisation_keeps_the_best_supervoxel_of_a_tiny_mask():
    """As in mirp, the supervoxel of highest overlap is always kept, so a mask smaller than any supervoxel
    is never emptied."""
    image, mask = ball_case(shape=(16, 36, 36), radius_mm=1.0, noise=20.0)
    for seed in range(3):
        spec = Contour(seed=seed, supervoxel_mm3=125.0, keep_above=1.0, drop_below=0.5)
        assert roi_of(Variant((spec,)).apply(image, mask, case_id="c")[1]).any()


def test_mask_label_is_respected():
    image, mask = ball_case(label=2)
    labelled = voxels(mask)
    labelled[0, 0, 0] = 1  # another structure with label 1
    mask2 = sitk.GetImageFromArray(labelled)
    mask2.CopyInformation(mask)
    _, out = Variant((ErodeDilate(distance_mm=1.0),)).apply(image, mask2, case_id="c", label=2)
    assert out.GetPixelID() == sitk.sitkUInt8 and set(np.unique(voxels(out))) == {0, 2}
    assert (roi_of(out, 2) >= (labelled == 2)).all()
    with pytest.raises(PerturbationError, match="no voxel with label 3"):
        Variant((ErodeDilate(distance_mm=1.0),)).apply(image, mask2, case_id="c", label=3)


# -- chains, replay, ids -------------------------------------------------------------------------------------

def _chain(seed=5):
    return Variant((Rotate(angle_deg=7.0, axis=[0.2, 0.1, 1.0], interpolator="bspline"),
                    Noise(level=0.5, relative=True, seed=seed), ErodeDilate(distance_mm=-0.6),
                    Contour(seed=seed + 1, supervoxel_mm3=27.0), BinWidth(width=10)))


def test_replay_from_params_is_bit_for_bit_and_pure():
    image, mask = ball_case(spacing=(0.8, 0.8, 2.0), shape=(12, 32, 32), radius_mm=6.0)
    before = (voxels(image).copy(), voxels(mask).copy(), image.GetOrigin())
    variant = _chain()
    replayed = Variant.from_params(variant.params)
    assert replayed == variant and replayed.variant_id == variant.variant_id
    a_image, a_mask = variant.apply(image, mask, case_id="c", repeat=2)
    b_image, b_mask = replayed.apply(image, mask, case_id="c", repeat=2)
    assert bit_identical(a_image, b_image) and bit_identical(a_mask, b_mask)
    assert np.array_equal(voxels(image), before[0]) and np.array_equal(voxels(mask), before[1])
    assert image.GetOrigin() == before[2]
    assert same_geometry(a_image, image) and same_geometry(a_mask, image)
    assert a_mask.GetPixelID() == sitk.sitkUInt8 and set(np.unique(voxels(a_mask))) <= {0, 1}


def test_variant_properties():
    variant = _chain()
    assert variant.kind == "discretisation+geometry+mask+noise"
    assert variant.seed not in (0, 5, 6) and isinstance(variant.seed, int) and variant.seed < 2 ** 63
    assert Variant((Noise(level=1.0, seed=42),)).seed == 42
    # the image key covers the chain up to the noise: mask and settings specs do not change it
    assert variant.image_key == Variant(variant.specs[:2]).variant_id
    assert Variant(variant.specs[2:]).image_key == schema.ORIGINAL
    settings_ = {"setting": {"binCount": 16, "label": 1}, "imageType": {"Original": {}}}
    assert variant.apply_settings(settings_) == {"setting": {"binWidth": 10.0, "label": 1},
                                                 "imageType": {"Original": {}}}
    assert settings_["setting"]["binCount"] == 16  # not modified
    assert Variant((BinCount(count=32),)).apply_settings({})["setting"] == {"binCount": 32}


def test_variant_ids_are_stable_across_processes():
    code = ("import json; from harmony.perturb import expand_design; "
            "d = json.load(open(0)); print(json.dumps([v.variant_id for v in expand_design(d, seed=3)]))")
    design = {"grid": [{"noise": {"level": [1.0, 2.0], "repeats": 2}, "rotate": {"angle_deg": [5.0]}}],
              "draw": [{"n": 3, "translate": {"fraction": {"uniform": [[-0.5, -0.5, 0.0], [0.5, 0.5, 0.0]]}}}]}
    here = [v.variant_id for v in expand_design(design, seed=3)]
    # one other process (importing harmony costs ~2.5 s) with its own string-hash seed
    run = subprocess.run([sys.executable, "-c", code], input=json.dumps(design), capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    assert json.loads(run) == here
    assert len(here) == 1 + 4 + 3


# -- designs ---------------------------------------------------------------------------------------------

def test_expansion_orders_chains_dedupes_and_drops_identities():
    design = {"grid": [{"bin_width": {"width": [10, 25]}, "erode_dilate": {"distance_mm": [0.0, 1.0]},
                        "noise": {"level": [2.0]}},
                       {"noise": {"level": [2.0]}}]}
    variants = expand_design(design, seed=1, base_params={"setting": {"binWidth": 25}})
    ids = [v.variant_id for v in variants]
    assert ids[0] == schema.ORIGINAL and len(ids) == len(set(ids))
    # grid 1: 2 x 2 x 1 = 4 chains (bin width 25 is the base: identity); grid 2 repeats one of them
    assert len(variants) == 1 + 4
    for v in variants[1:]:
        groups = [{"image": 0, "image+mask": 0, "mask": 1, "settings": 2}[s.target] for s in v.specs]
        assert groups == sorted(groups) and v.specs[0].kind == "noise"
    assert {v.kind for v in variants} == {"original", "noise", "discretisation+noise", "mask+noise",
                                          "discretisation+mask+noise"}
    assert len(expand_design(design, seed=1)) == 1 + 5  # no base: 25 is not an identity, grid 2 adds one


def test_seeds_come_from_the_experiment_seed_and_the_level():
    design = {"grid": [{"noise": {"level": [1.0], "repeats": 3}}], "draw": [{"n": 4, "rotate": {"angle_deg": {
        "uniform": [-10.0, 10.0]}}, "contour": {}}]}
    a, b, c = (expand_design(design, seed=s) for s in (7, 7, 8))
    assert [v.variant_id for v in a] == [v.variant_id for v in b] != [v.variant_id for v in c]
    noise_seeds = [v.seed for v in a if v.kind == "noise"]
    assert len(set(noise_seeds)) == 3
    angles = [v.specs[0].angle_deg for v in a if v.kind == "geometry+mask"]
    assert len(set(angles)) == 4 and all(-10 <= x <= 10 for x in angles)
    # a level's seeds do not depend on what else the design holds
    alone = expand_design({"grid": design["grid"]}, seed=7)
    assert [v.variant_id for v in alone] == [v.variant_id for v in a][: len(alone)]
    # each sample of a draw is its own realisation, even when the stochastic spec's parameters are fixed
    contours = {s.seed for v in a if v.kind == "geometry+mask" for s in v.specs if s.kind == "contour"}
    assert len(contours) == 4
    assert len(expand_design({"draw": [{"n": 5, "noise": {"level": 1.0}}]}, seed=7)) == 1 + 5


@pytest.mark.parametrize("design, message", [
    ({"grid": [{"noise": {"levle": [1.0]}}]}, "x.toml: grid[0].noise.levle: unknown key"),
    ({"grid": [{"nosie": {"level": [1.0]}}]}, "x.toml: grid[0].nosie: unknown key"),
    ({"grid": [{}]}, "x.toml: grid[0]: name at least one perturbation"),
    ({"grid": [{"noise": {}}]}, "x.toml: grid[0].noise.level: required key is missing"),
    ({"grid": [{"resample": {"spacing_mm": [1.0, 2.0]}}]}, "grid[0].resample.spacing_mm: expected a vector"),
    ({"grid": [{"rotate": {"angle_deg": 5.0, "repeats": 2}}]}, "grid[0].rotate.repeats: unknown key"),
    ({"draw": [{"n": 2, "rotate": {"angle_deg": {"uniform": [10, -10]}}}]}, "uniform low must be <= high"),
    ({"draw": [{"n": 2, "rotate": {"angle_deg": {"normal": [0, 1]}}}]}, "{uniform = [low, high]}"),
    ({"grid": [{"contour": {"keep_above": 0.5, "drop_below": 0.5}}]}, "x.toml: grid[0].contour: contour: drop_below"),
])
def test_bad_designs_name_file_and_key(design, message):
    with pytest.raises(ConfigError) as err:
        expand_design(design, seed=0, source="x.toml")
    assert message in str(err.value)


def test_vector_parameters_read_flat_lists_as_one_vector():
    grid = expand_design({"grid": [{"resample": {"spacing_mm": [1.0, 1.0, 3.0]}},
                                   {"resample": {"spacing_mm": [[1.0, 1.0, 3.0], 2.0]}}]}, seed=0)
    assert [v.specs[0].spacing_mm for v in grid[1:]] == [(1.0, 1.0, 3.0), (2.0, 2.0, 2.0)]


def test_example_designs_validate_and_the_experiment_section_uses_the_schema(tmp_path):

    from harmony.core.config import load, validate
    from harmony.workflows.experiment import experiment_schema

    folder = ROOT / "experiments" / "designs"
    for path in sorted(folder.glob("*.toml")):
        assert len(expand_design(load(path, DESIGN), seed=0, source=str(path))) > 1
    config = validate({"perturbations": {"grid": [{"noise": {"level": [1.0]}}]}}, experiment_schema(), file="e.toml")
    assert len(expand_design(config["perturbations"], seed=0)) == 2
    with pytest.raises(ConfigError, match="e.toml: perturbations.grid"):
        validate({"perturbations": {"grid": [{"noise": {"level": "high"}}]}}, experiment_schema(), file="e.toml")


def test_variants_table_round_trips_and_detects_edits():
    variants = expand_design({"grid": [{"rotate": {"angle_deg": [5.0, 10.0]}, "contour": {"repeats": 2}}]}, seed=2)
    table = variants_table(variants)
    assert list(table.columns) == schema.VARIANTS.names and len(table) == 5
    assert variants_from_table(table) == variants
    edited = table.copy()
    edited.loc[1, schema.PARAMS] = edited.loc[2, schema.PARAMS]
    with pytest.raises(PerturbationError, match="do not describe it"):
        variants_from_table(edited)


# -- acceptance: lung1 -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_acceptance_design_on_lung1(pyradiomics_cases):

    from harmony.core.config import load

    path = ROOT / "experiments" / "designs" / "acceptance.toml"
    design = load(path, DESIGN)
    variants = expand_design(design, seed=2019)
    # noise 2 levels x 2 repeats = 4; bin width 3; erosion/dilation 5 (0 mm is the identity, its chains keep
    # the other factors, so none collapses); contour 3 seeds: 4 * 3 * 5 * 3 = 180 chains + original = 181.
    assert len(variants) == 4 * 3 * 5 * 3 + 1 == 181
    assert [v.variant_id for v in expand_design(load(path, DESIGN), seed=2019)] == [v.variant_id for v in variants]
    assert len({v.variant_id for v in variants}) == 181
    # with pyradiomics' default bin width (25) as base, bin width 25 is an identity: the count is unchanged
    assert len(expand_design(design, seed=2019, base_params={"setting": {}})) == 181
    image = sitk.ReadImage(str(pyradiomics_cases / "lung1_image.nrrd"))
    mask = sitk.ReadImage(str(pyradiomics_cases / "lung1_label.nrrd"))
    seen = {}
    for variant, made, error in iter_variants(image, mask, variants, case_id="lung1"):
        if error is not None:
            assert str(error).startswith("case 'lung1', variant ") and len(str(error)) > 40
        else:
            out_image, out_mask = made
            assert roi_of(out_mask).any() and same_geometry(out_image, image) and same_geometry(out_mask, image)
        seen[variant.variant_id] = error
    assert set(seen) == {v.variant_id for v in variants}
    # iter_variants shares work between variants but equals apply bit for bit
    for variant in variants[1:4]:
        a_image, a_mask = variant.apply(image, mask, case_id="lung1")
        b_image, b_mask = next(m for v, m, e in iter_variants(image, mask, [variant], case_id="lung1"))
        assert bit_identical(a_image, b_image) and bit_identical(a_mask, b_mask)


def test_a_subnormal_axis_component_rotates_as_zero():
    """Found by hypothesis: an axis component of 2.2e-308 made SimpleITK's inverse transform NaN (a
    RuntimeWarning and a garbage region). It turns nothing, so it must rotate exactly as 0 does."""
    roi = np.zeros((20, 20, 20), bool)
    roi[7:13, 8:12, 6:14] = True
    image, mask = _images(roi, (1.0, 1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = Variant((Rotate(angle_deg=10, axis=[2.2e-308, 0, 0.5]),)).apply(image, mask, case_id="c")
    plain = Variant((Rotate(angle_deg=10, axis=[0, 0, 0.5]),)).apply(image, mask, case_id="c")
    assert np.array_equal(voxels(tiny[0]), voxels(plain[0])) and np.array_equal(voxels(tiny[1]), voxels(plain[1]))
