"""Phantoms, scanner profiles and cohort simulation (issue 4)."""

from __future__ import annotations

import math
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from harmony.core import schema
from harmony.core.cases import load_cases
from harmony.core.config import read_toml, validate
from harmony.core.errors import ConfigError
from harmony.core.files import read_json
from harmony.core.resources import builtin_path
from harmony.extraction.adapter import extract, feature_class
from harmony.extraction.engine import run_tasks
from harmony.extraction.params import load_params
from harmony.phantoms import textures
from harmony.phantoms.cohort import sample_subjects, simulate_cohort
from harmony.phantoms.digital import ibsi_digital_phantom
from harmony.phantoms.render import (
    _draw_shape,
    _geometry,
    _lesion_masks,
    _physical_points,
    render_phantom,
)
from harmony.phantoms.scanners import acquire
from harmony.phantoms.specs import (
    SCANNER,
    SUBJECT,
    builtin_scanners,
    load_cohort_spec,
    load_scanner,
    phantom_spec,
)
from harmony.workflows.experiment import load_experiment
from tests.conftest import ROOT, reference_path, voxels

DEMO = ROOT / "phantoms" / "cohort_demo.toml"
COHORT_PARAMS = ROOT / "phantoms" / "cohort_params.yaml"


def small_spec(size: int = 24, **lesion) -> dict:
    return {"grid": {"size": [size] * 3}, "lesion": {"radius_mm": 6.0, **lesion}}


lesion_options = st.fixed_dictionaries({
    "radius_mm": st.floats(3.0, 7.0),
    "axes": st.lists(st.floats(0.6, 1.0), min_size=3, max_size=3),
    "orientation": st.sampled_from(["aligned", "random"]),
    "lobes": st.integers(0, 5),
    "lobulation": st.floats(0.0, 0.4),
    "spikes": st.integers(0, 4),
    "spike_length_mm": st.floats(0.0, 3.0),
    "components": st.integers(1, 3),
    "component_distance_mm": st.floats(0.0, 3.0),
    "necrosis_fraction": st.floats(0.0, 0.5),
    "heterogeneity": st.floats(0.0, 20.0),
    "coarseness_mm": st.floats(0.0, 3.0),
    "regions": st.integers(0, 4),
    "region_contrast": st.floats(0.0, 10.0),
    "gradient": st.floats(-10.0, 10.0),
})


# -- phantoms ---------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=15)
@given(lesion=lesion_options, seed=st.integers(0, 2**32 - 1))
def test_phantom_is_a_pure_function_of_spec_and_seed(lesion, seed):
    spec = {"grid": {"size": [28, 28, 28], "spacing_mm": [1.0, 1.0, 1.2]}, "lesion": lesion}
    image, mask = render_phantom(spec, seed)
    again, again_mask = render_phantom(spec, seed)
    assert np.array_equal(voxels(image), voxels(again)) and np.array_equal(voxels(mask), voxels(again_mask))
    assert image.GetPixelID() == sitk.sitkFloat32 and mask.GetPixelID() == sitk.sitkUInt8
    assert image.GetSpacing() == mask.GetSpacing() == (1.0, 1.0, 1.2)
    other, _ = render_phantom(spec, seed + 1)
    assert not np.array_equal(voxels(image), voxels(other))
    # the lesion fits the 28 mm grid (radius <= 7 + lobes + spikes): non-empty and clear of the border
    m = voxels(mask)
    assert m.sum() > 0 and set(np.unique(m)) <= {0, 1}
    # the outline is evaluated in a box around the lesion only: the same as evaluating the whole grid
    full = phantom_spec(spec)
    size, spacing, origin, direction = _geometry(full["grid"])
    points = _physical_points(spacing, origin, direction, (0, 0, 0), size)
    shape = _draw_shape(full["lesion"], np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[0]))
    assert np.array_equal(_lesion_masks(points, full["lesion"], shape)[0], m.astype(bool))
    assert not (m[[0, -1]].any() or m[:, [0, -1]].any() or m[:, :, [0, -1]].any())


def test_phantom_grid_has_real_geometry():
    direction = [0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    spec = {"grid": {"size": [20, 22, 24], "spacing_mm": [0.8, 0.9, 1.5], "origin_mm": [10.0, -5.0, 3.0],
                     "direction": direction}, "lesion": {"radius_mm": 4.0, "center_mm": [19.0, -12.0, 20.0]}}
    image, mask = render_phantom(spec, 0)
    for img in (image, mask):
        assert img.GetSize() == (20, 22, 24)
        assert np.allclose(img.GetSpacing(), (0.8, 0.9, 1.5)) and np.allclose(img.GetOrigin(), (10.0, -5.0, 3.0))
        assert np.allclose(img.GetDirection(), direction)
    # the lesion sits where center_mm says, in physical space
    stats_filter = sitk.LabelShapeStatisticsImageFilter()
    stats_filter.Execute(mask)
    assert np.allclose(stats_filter.GetCentroid(1), (19.0, -12.0, 20.0), atol=0.3)


@settings(deadline=None, max_examples=10)
@given(radius=st.floats(11.0, 20.0), odd=st.booleans(), seed=st.integers(0, 1000))
def test_sphere_voxel_volume_matches_formula_at_1mm(radius, odd, seed):
    # the mask samples voxel centres: below ~11 voxels of radius the lattice count itself strays past 3%
    size = 2 * int(radius) + 4 + odd
    _, mask = render_phantom({"grid": {"size": [size] * 3}, "lesion": {"radius_mm": radius}}, seed)
    volume = voxels(mask).sum() * 1.0
    assert abs(volume - 4 / 3 * math.pi * radius**3) <= 0.03 * 4 / 3 * math.pi * radius**3


def test_anatomy_is_in_mm_not_voxels():
    lesion = {"radius_mm": 6.0, "axes": [1.0, 0.7, 0.8], "lobes": 4, "lobulation": 0.3, "spikes": 3}
    _, coarse = render_phantom({"grid": {"size": [32] * 3}, "lesion": lesion}, 7)
    _, fine = render_phantom({"grid": {"size": [64] * 3, "spacing_mm": [0.5] * 3}, "lesion": lesion}, 7)
    assert voxels(coarse).sum() * 1.0 == pytest.approx(voxels(fine).sum() * 0.125, rel=0.05)


def test_necrotic_core_and_components():
    plain, plain_mask = render_phantom(small_spec(28, heterogeneity=0.0, necrosis_fraction=0.0), 3)
    necrotic, necrotic_mask = render_phantom(
        small_spec(28, heterogeneity=0.0, necrosis_fraction=0.3, necrosis_heterogeneity=0.0), 3)
    assert np.array_equal(voxels(plain_mask), voxels(necrotic_mask))  # the mask covers the core
    inside = voxels(necrotic)[voxels(necrotic_mask) == 1]
    core_share = np.mean(inside == 20.0)  # necrosis_intensity's default
    assert core_share == pytest.approx(0.3, abs=0.06)
    assert np.all(voxels(plain)[voxels(plain_mask) == 1] == 100.0)
    _, parts = render_phantom(small_spec(32, radius_mm=7.0, components=3, component_distance_mm=8.0), 5)
    assert int(voxels(sitk.ConnectedComponent(parts)).max()) >= 2


def test_random_field_has_unit_variance_and_its_correlation_length():
    rng = np.random.default_rng(0)
    for corr in (0.0, 1.0, 3.0):
        field = textures.gaussian_random_field((48, 48, 48), (1.0, 1.0, 1.0), corr, rng)
        assert field.std() == pytest.approx(1.0, rel=0.15 if corr < 3 else 0.3)
    smooth = textures.gaussian_random_field((64, 64, 64), (1.0, 1.0, 1.0), 2.0, rng)
    lag1 = np.corrcoef(smooth[:, :, :-1].ravel(), smooth[:, :, 1:].ravel())[0, 1]
    assert lag1 == pytest.approx(math.exp(-1 / (4 * 2.0**2)), abs=0.03)  # Gaussian ACF with variance 2 sigma^2
    with pytest.raises(ValueError, match="correlation_mm must be >= 0"):
        textures.gaussian_random_field((4, 4, 4), (1.0, 1.0, 1.0), -1.0, rng)


def test_longer_correlation_length_gives_lower_glcm_contrast():
    params = {"setting": {"binWidth": 5, "label": 1}, "imageType": {"Original": {}},
              "featureClass": {"glcm": ["Contrast"]}}
    contrast = []
    for coarseness in (0.5, 1.0, 2.0, 3.0):
        spec = {"grid": {"size": [32] * 3}, "lesion": {"radius_mm": 12.0, "heterogeneity": 25.0,
                                                       "coarseness_mm": coarseness}}
        image, mask = render_phantom(spec, 11)
        contrast.append(extract(image, mask, params).features["original_glcm_Contrast"])
    assert all(a > b for a, b in zip(contrast, contrast[1:])), contrast


# -- scanners ---------------------------------------------------------------------------------------

def profile(**sections) -> dict:
    return validate(sections, SCANNER, file="<test profile>")


def flat_phantom(size: int = 32, background_sd: float = 0.0, lesion_intensity: float = 100.0):
    spec = {"grid": {"size": [size] * 3},
            "lesion": {"radius_mm": 4.0, "heterogeneity": 0.0, "intensity": lesion_intensity},
            "background": {"intensity": 50.0, "heterogeneity": background_sd, "coarseness_mm": 0.0}}
    return render_phantom(spec, 0)


def background_sd(image: sitk.Image, mask: sitk.Image) -> float:
    return float(voxels(image)[voxels(mask) == 0].std())


def test_more_blur_gives_lower_measured_noise():
    image, mask = flat_phantom(background_sd=20.0)
    measured = [background_sd(*acquire(image, mask, profile(psf={"fwhm_mm": [fwhm] * 3}), np.random.default_rng(0)))
                for fwhm in (0.0, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(measured, measured[1:])), measured


def test_scanner_noise_level_texture_calibration_and_grid():
    image, mask = flat_phantom(size=40)
    white = profile(noise={"sd": 10.0})
    smooth = profile(noise={"sd": 10.0, "correlation_mm": 1.5})
    for prof in (white, smooth):  # the noise SD is what the profile says, whatever its texture
        scan, scan_mask = acquire(image, mask, prof, np.random.default_rng(1))
        assert background_sd(scan, scan_mask) == pytest.approx(10.0, rel=0.1)
    steps = [np.diff(voxels(acquire(image, mask, prof, np.random.default_rng(1))[0]), axis=2).std()
             for prof in (white, smooth)]
    assert steps[1] < 0.5 * steps[0]  # correlated (smooth-kernel) noise has less high-frequency power
    scan, scan_mask = acquire(image, mask, profile(resolution={"pixel_mm": 1.25, "slice_mm": 5.0},
                                                   calibration={"scale": 2.0, "offset": 30.0}),
                              np.random.default_rng(2))
    assert scan.GetSpacing() == (1.25, 1.25, 5.0) and scan.GetSize() == (32, 32, 8)
    assert scan.GetSize() == scan_mask.GetSize() and scan.GetOrigin() == scan_mask.GetOrigin()
    centre = lambda img: np.asarray(img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()]))
    assert np.allclose(centre(scan), centre(image))  # same field of view
    assert np.median(voxels(scan)[voxels(scan_mask) == 0]) == pytest.approx(2.0 * 50.0 + 30.0, abs=1.0)


def test_bias_field_is_smooth_multiplicative_with_the_declared_amplitude():
    image, mask = flat_phantom(size=16, lesion_intensity=50.0)
    biased = profile(bias_field={"amplitude": 0.2, "length_mm": 40.0})
    logs = np.stack([np.log(voxels(acquire(image, mask, biased, np.random.default_rng(seed))[0]) / 50.0)
                     for seed in range(40)])
    assert logs[:, 0, 0, 0].std() == pytest.approx(0.2, abs=0.06)  # across scans: the declared SD of log(field)
    assert logs[:, 0, 0, 0].mean() == pytest.approx(0.0, abs=0.1)
    assert logs[0].std() > 0.01 and np.abs(np.diff(logs[0], axis=2)).max() < 0.05  # varies, smoothly


def test_shipped_scanner_profiles_validate_and_differ():
    names = builtin_scanners()
    assert {"ct_sharp_1mm", "ct_smooth_5mm", "ct_standard_2mm_offset", "mr_bias_field"} <= set(names)
    profiles = {name: load_scanner(builtin_path("scanner", name)) for name in names}
    slices = {p["resolution"]["slice_mm"] for p in profiles.values()}
    correlations = {p["noise"]["correlation_mm"] for p in profiles.values()}
    calibrations = {(p["calibration"]["scale"], p["calibration"]["offset"]) for p in profiles.values()}
    assert {1.0, 5.0} <= slices and 0.0 in correlations and len(correlations) > 1 and len(calibrations) > 1
    assert any(p["bias_field"]["amplitude"] > 0 for p in profiles.values())


def test_bad_scanner_profile_names_file_and_key(tmp_path):
    bad = tmp_path / "typo.toml"
    bad.write_text('[noise]\nsd = 3.0\nsdd = 4.0\n')
    with pytest.raises(ConfigError, match=r"typo\.toml: noise\.sdd: unknown key"):
        load_scanner(bad)
    both = tmp_path / "both.toml"
    both.write_text('[psf]\nfwhm_mm = [1, 1, 1]\nsigma_mm = [1, 1, 1]\n')
    with pytest.raises(ConfigError, match="both.toml: psf: give psf.fwhm_mm or psf.sigma_mm, not both"):
        load_scanner(both)
    spec = {"scanners": {"profiles": ["no_such_scanner"]}}
    unknown = r"scanners\.profiles\[0\]: no built-in scanner 'no_such_scanner' \(built-in: ct_sharp_1mm"
    with pytest.raises(ConfigError, match=unknown):
        load_cohort_spec(spec)


# -- cohorts ----------------------------------------------------------------------------------------

def tiny_cohort(**changes) -> dict:
    spec = {
        "cohort": {"subjects": 6, "seed": 4},
        "grid": {"size": [24, 24, 24]},
        "covariates": [{"name": "age", "mean": 60.0, "sd": 5.0}, {"name": "group", "levels": ["a", "b"]}],
        "latent": {"radius_mm": {"distribution": "uniform", "low": 3.0, "high": 6.0},
                   "heterogeneity": {"mean": 10.0, "sd": 3.0, "min": 0.0}},
        "scanners": {"profiles": ["ct_sharp_1mm", "ct_smooth_5mm"], "travelling": 2},
    }
    for section, value in changes.items():
        spec[section] = {**spec[section], **value} if isinstance(value, dict) else value
    return spec


def test_cohort_writes_a_valid_cases_table_with_truth(tmp_path):
    cases = simulate_cohort(tiny_cohort(), tmp_path / "c", progress=False)
    schema.CASES.validate(cases)
    assert len(cases) == 2 * 2 + 4  # two travelling subjects on both scanners, four on one
    assert set(schema.truth_columns(cases.columns)) == {"truth_radius_mm", "truth_heterogeneity", "truth_volume_mm3"}
    assert {"age", "group", SUBJECT} <= set(cases.columns)
    travelling = cases[cases[SUBJECT] == "sub000"]
    assert sorted(travelling[schema.SITE]) == ["ct_sharp_1mm", "ct_smooth_5mm"]
    assert travelling["truth_radius_mm"].nunique() == 1  # one subject, one biology
    assert cases["truth_radius_mm"].between(3.0, 6.0).all()
    loaded = load_cases(tmp_path / "c" / "cases.csv")  # the format `harmony extract` reads, checked case by case
    assert list(loaded[schema.CASE_ID]) == list(cases[schema.CASE_ID])
    smooth = cases[cases[schema.SITE] == "ct_smooth_5mm"].iloc[0]
    assert sitk.ReadImage(smooth[schema.IMAGE]).GetSpacing() == (1.0, 1.0, 5.0)
    recorded = read_json(tmp_path / "c" / "cohort.json")["subjects"][0]
    replay, _ = render_phantom(recorded["phantom"], recorded["seed"])  # the record re-renders the subject
    assert replay.GetSize() == (24, 24, 24)


def test_cohort_is_deterministic_and_seeded(tmp_path):
    a = simulate_cohort(tiny_cohort(), tmp_path / "a", progress=False)
    b = simulate_cohort(tiny_cohort(), tmp_path / "b", progress=False)
    c = simulate_cohort(tiny_cohort(), tmp_path / "c", seed=5, progress=False)
    truth = schema.truth_columns(a.columns)
    pd.testing.assert_frame_equal(a[truth], b[truth])
    assert not np.allclose(a["truth_radius_mm"], c["truth_radius_mm"])
    for x, y in zip(a[schema.IMAGE], b[schema.IMAGE]):
        assert np.array_equal(voxels(sitk.ReadImage(x)), voxels(sitk.ReadImage(y)))


def test_latent_variables_follow_covariate_effects(tmp_path):
    spec = load_cohort_spec(tiny_cohort(
        cohort={"subjects": 200},
        latent={"radius_mm": {"mean": 6.0, "sd": 0.5, "effects": [{"covariate": "group", "level": "b", "coef": 2.0},
                                                                   {"covariate": "age", "coef": 0.1, "center": 60.0}]}},
        scanners={"assignment": "balanced", "travelling": 0}))
    subjects = sample_subjects(spec, seed=1)
    by_group = subjects.groupby("group")["truth_radius_mm"].mean()
    assert by_group["b"] - by_group["a"] == pytest.approx(2.0, abs=0.35)
    residual = subjects["truth_radius_mm"] - 2.0 * (subjects["group"] == "b")
    assert np.polyfit(subjects["age"], residual, 1)[0] == pytest.approx(0.1, abs=0.04)
    counts = subjects["sites"].map(lambda s: s[0]).value_counts()
    assert sorted(counts) == [100, 100]  # balanced


def test_cohort_spec_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"latent\.radius_mm\.effects\[0\]: covariate 'sex' is not declared"):
        load_cohort_spec(tiny_cohort(latent={"radius_mm": {"effects": [{"covariate": "sex", "coef": 1.0}]}}))
    with pytest.raises(ConfigError, match=r"latent\.lesion_size: unknown key"):
        load_cohort_spec(tiny_cohort(latent={"lesion_size": {}}))
    with pytest.raises(ConfigError, match="name 'site' is reserved"):
        load_cohort_spec(tiny_cohort(covariates=[{"name": "site", "levels": ["x"]}]))
    with pytest.raises(ConfigError, match=r"--set: grid\.size: expected 3 values"):
        load_cohort_spec(DEMO, ["grid.size=[32, 32]"])
    negative = tiny_cohort(latent={"radius_mm": {"mean": -5.0, "sd": 1.0}})  # clipped to 0: no lesion
    with pytest.raises(ConfigError, match=r"<inline cohort>: subject 'sub000': .*lesion\.radius_mm: must be > 0"):
        simulate_cohort(negative, tmp_path / "negative", progress=False)


def test_experiment_config_takes_a_cohort_by_path_or_inline(tmp_path):
    by_path = tmp_path / "by_path.toml"
    by_path.write_text(f'[cases]\ncohort = "{DEMO}"\n')
    assert load_experiment(by_path)["cases"]["cohort"] == str(DEMO)
    inline = tmp_path / "inline.toml"
    inline.write_text('[cases.cohort]\ncohort = { subjects = 4 }\nscanners = { profiles = ["ct_sharp_1mm"] }\n')
    cohort = load_experiment(inline)["cases"]["cohort"]
    assert load_cohort_spec(cohort)["cohort"]["subjects"] == 4
    inline.write_text('[cases.cohort]\nlesion = { radius = 4 }\nscanners = { profiles = ["ct_sharp_1mm"] }\n')
    with pytest.raises(ConfigError, match=r"inline\.toml: cases\.cohort: .*lesion\.radius: unknown key"):
        load_experiment(inline)


# -- the IBSI 1 digital phantom ---------------------------------------------------------------------

def test_ibsi_phantom_equals_the_published_files():
    folder = reference_path("ibsi1_digital_phantom")
    image, mask = ibsi_digital_phantom()
    # the files store int16; ours are the documented float32 image and uint8 mask
    for ours, name, dtype in ((image, "image.nii.gz", np.float32), (mask, "mask.nii.gz", np.uint8)):
        theirs = sitk.ReadImage(str(folder / name))
        assert ours.GetSize() == theirs.GetSize()
        assert np.allclose(ours.GetSpacing(), theirs.GetSpacing())
        assert np.allclose(ours.GetOrigin(), theirs.GetOrigin())
        assert np.allclose(ours.GetDirection(), theirs.GetDirection())
        assert voxels(ours).dtype == dtype and voxels(theirs).dtype == np.int16
        assert np.array_equal(voxels(ours), voxels(theirs))  # same values, compared without a cast


# -- acceptance: scanner effects are strong, biology stays recoverable ------------------------------

def _best_abs_spearman(feature_ranks: np.ndarray, truth: np.ndarray) -> float:
    """The largest |Spearman rho| between any feature (columns of ranks) and the truth."""
    t = stats.rankdata(truth)
    f = feature_ranks - feature_ranks.mean(axis=0)
    t = t - t.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (f * t[:, None]).sum(axis=0) / np.sqrt((f**2).sum(axis=0) * (t**2).sum())
    return float(np.nanmax(np.abs(rho)))


def site_and_truth_effects(cases: pd.DataFrame) -> tuple[float, dict[str, float], dict[str, float]]:
    """(share of texture features whose site ANOVA has BH q < 0.05, best |Spearman| per truth column, and
    that best |Spearman| reached by chance: its 95th percentile over 200 permutations of the truth)."""
    with tempfile.TemporaryDirectory() as scratch:
        run = run_tasks(cases, None, load_params(COHORT_PARAMS), scratch, progress=False)
    features, failures = run.features, run.failures
    assert failures.empty, failures
    wide = schema.wide_features(features).set_index(schema.CASE_ID).drop(columns=[schema.VARIANT_ID, schema.REPEAT])
    cases = cases.set_index(schema.CASE_ID).loc[wide.index]
    texture = [f for f in wide.columns if feature_class(f) in ("glcm", "glrlm", "glszm")]
    p = [stats.f_oneway(*(wide.loc[cases[schema.SITE] == s, f] for s in cases[schema.SITE].unique())).pvalue
         for f in texture]
    significant = float(np.mean(stats.false_discovery_control(np.nan_to_num(p, nan=1.0)) < 0.05))
    ranks = stats.rankdata(wide.to_numpy(dtype=float), axis=0)
    rng = np.random.default_rng(0)
    best, chance = {}, {}
    for t in schema.truth_columns(cases.columns):
        truth = cases[t].to_numpy(dtype=float)
        best[t] = _best_abs_spearman(ranks, truth)
        chance[t] = float(np.quantile([_best_abs_spearman(ranks, rng.permutation(truth)) for _ in range(200)],
                                      0.95))
    return significant, best, chance


@pytest.mark.slow
def test_site_explains_texture_while_truth_stays_recoverable(tmp_path):
    small = ["cohort.subjects=24", "grid.size=[48, 48, 48]"]
    real = simulate_cohort(load_cohort_spec(DEMO, small), tmp_path / "real", progress=False)
    # the null: four sites that are copies of one profile, everything else equal
    for i in range(4):
        shutil.copy(builtin_path("scanner", "ct_standard_2mm_offset"), tmp_path / f"same{i}.toml")
    same = small + ['scanners.profiles=["same0.toml", "same1.toml", "same2.toml", "same3.toml"]']
    null = simulate_cohort(load_cohort_spec(read_toml(DEMO), same, base_dir=tmp_path), tmp_path / "null",
                           progress=False)
    share_real, truth_real, chance = site_and_truth_effects(real)
    share_null, _, _ = site_and_truth_effects(null)
    assert share_real >= 0.7 and share_null <= 0.2, (share_real, share_null)
    assert truth_real["truth_radius_mm"] > 0.9 and truth_real["truth_necrosis_fraction"] > 0.5, truth_real
    # the best of ~100 features correlates with anything by chance: beat the permutation null, not a number
    for t in ("truth_radius_mm", "truth_necrosis_fraction", "truth_heterogeneity"):
        assert truth_real[t] > chance[t], (t, truth_real[t], chance[t])
