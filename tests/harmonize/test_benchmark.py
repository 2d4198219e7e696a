"""The harmonizer benchmark: cohorts with known truth, scores, cells, ranking, and its acceptance on small matrices."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core.errors import HarmonyError
from harmony.harmonize.benchmark.adapters import (
    NotApplicable,
    available_methods,
    harmonize_split,
)
from harmony.harmonize.benchmark.cells import (
    Cell,
    rank_methods,
    recommend,
    run_cell,
    sample_size_curve,
)
from harmony.harmonize.benchmark.cohorts import (
    DEFAULT_MATRIX,
    ImageScenario,
    Scenario,
    scenario_model,
    simulate_cohort,
)
from harmony.harmonize.benchmark.images import image_cohort
from harmony.harmonize.benchmark.likeme import fit_cohort_model
from harmony.harmonize.benchmark.scores import (
    balanced_site_accuracy,
    covariance_left,
    effect_bias,
    score_split,
    site_test_fractions,
    truth_correlation,
)
from harmony.workflows import benchmark as benchmark_workflow
from harmony.workflows.benchmark import compare_harmonizers

SCENARIOS = {s.name: s for s in DEFAULT_MATRIX}


def _mean(cohort: str | Scenario, method: str, metric: str, split: str = "test", replicates: int = 3) -> float:
    scenario = SCENARIOS[cohort] if isinstance(cohort, str) else cohort
    values = [s["value"] for r in range(replicates) for s in run_cell(Cell.of(scenario, method, r, 0))["scores"]
              if s["metric"] == metric and s["split"] == split]
    return float(np.mean(values))


# -- the generator ------------------------------------------------------------------------------------

def test_cohort_without_site_effects_equals_its_clean_values():
    model = scenario_model(Scenario("flat", additive=0.0, multiplicative=0.0), np.random.default_rng(0))
    cohort = simulate_cohort(model, 5, np.random.default_rng(1))
    np.testing.assert_allclose(cohort.X, cohort.clean)


def test_site_effects_are_the_simulated_ones():
    scenario = Scenario("big", additive=1.0, multiplicative=0.0, n_features=4)
    model = scenario_model(scenario, np.random.default_rng(0))
    cohort = simulate_cohort(model, 4000, np.random.default_rng(1))
    site = cohort.site
    for k, name in enumerate(model.batches["site"]):
        rows = site == name
        np.testing.assert_allclose((cohort.X - cohort.clean)[rows].mean(axis=0), model.shift["site"][k], atol=0.01)


def test_bounded_and_skewed_features_stay_in_their_natural_range():
    for marginal, low, high in (("log", 0, np.inf), ("logit", 0, 1)):
        model = scenario_model(Scenario("m", marginal=marginal), np.random.default_rng(0))
        cohort = simulate_cohort(model, 20, np.random.default_rng(1))
        assert cohort.X.min() > low and cohort.X.max() < high and cohort.clean.min() > low


def test_hidden_batch_is_in_the_truth_not_in_the_recorded_batches():
    model = scenario_model(Scenario("h", hidden=1.0), np.random.default_rng(0))
    cohort = simulate_cohort(model, 10, np.random.default_rng(1))
    assert list(cohort.batches.columns) == ["site"]
    assert len(set(cohort.truth_batch)) == 6


def test_confounded_sites_have_different_patient_fractions():
    model = scenario_model(Scenario("c", confounded=0.4), np.random.default_rng(0))
    cohort = simulate_cohort(model, 400, np.random.default_rng(1))
    fractions = pd.Series(cohort.covariates["group"] == "patient").groupby(cohort.site).mean()
    assert fractions.iloc[0] < 0.2 and fractions.iloc[-1] > 0.8


# -- the scores ---------------------------------------------------------------------------------------

def test_site_accuracy_is_chance_without_a_site_effect():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 100)
    accuracy, chance = balanced_site_accuracy(rng.normal(size=(300, 8)), labels)
    assert chance == pytest.approx(1 / 3) and abs(accuracy - chance) < 0.08


def test_site_accuracy_is_balanced_on_unbalanced_sites():
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 270 + ["b"] * 30)
    accuracy, chance = balanced_site_accuracy(rng.normal(size=(300, 4)), labels)
    assert chance == 0.5 and accuracy < 0.62  # a majority vote would score 0.9 unbalanced, 0.5 balanced


def test_site_tests_find_a_shift_and_only_in_shifted_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 60)
    X = rng.normal(size=(120, 4))
    X[:, :2] += 1.5 * (labels == "a")[:, None]
    kw, ad = site_test_fractions(X, labels)
    assert 0.5 <= kw <= 0.75 and 0.5 <= ad <= 0.75


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 5), st.floats(-5, 5))
def test_truth_correlation_and_effect_bias_ignore_a_shift(seed, scale, shift):
    rng = np.random.default_rng(seed)
    design = rng.normal(size=(30, 2))
    clean = design @ rng.normal(size=(2, 3)) + rng.normal(size=(30, 3))
    assert truth_correlation(clean * scale + shift, clean) == pytest.approx(1.0)
    assert effect_bias(clean + shift, clean, design) == pytest.approx(0.0, abs=1e-9)


def test_covariance_left_sees_a_site_specific_correlation():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 200)
    X = rng.normal(size=(400, 3))
    same = covariance_left(X, labels)
    X[:200, 1] = X[:200, 0] + 0.3 * X[:200, 1]
    assert covariance_left(X, labels) > same + 0.1


# -- cells, adapters, ranking ---------------------------------------------------------------------------

def test_a_cell_is_deterministic_and_independent_of_the_other_methods():
    cell = Cell.of(replace(SCENARIOS["additive"], n_features=6), "combat", 1, 7)
    first, second = run_cell(cell), run_cell(cell)
    assert first.pop("seconds") > 0 and second.pop("seconds") > 0
    assert first == second
    other = run_cell(replace(cell, method="none"))
    assert {(s["metric"], s["split"]) for s in other["scores"]} == {(s["metric"], s["split"]) for s in first["scores"]}


def test_every_available_method_runs_or_says_why_not():
    scenario = Scenario("tiny", n_features=5, n_train=8, n_test=8)
    model = scenario_model(scenario, np.random.default_rng(0))
    train, test = simulate_cohort(model, 8, np.random.default_rng(1)), simulate_cohort(model, 8, np.random.default_rng(2))
    assert {"none", "combat", "gam", "covbat", "gmm", "neuroCombat"} <= set(available_methods())
    for method in available_methods():
        try:
            out, held = harmonize_split(method, train, test, ["age"])
        except NotApplicable as exc:
            assert method in ("combat+log", "nested", "combatlearn-gam"), (method, exc)
            continue
        assert out.shape == train.X.shape and held.shape == test.X.shape and np.isfinite(held).all(), method


def test_neurocombat_adapter_matches_harmony_combat_on_training_subjects():
    model = scenario_model(Scenario("plain", n_features=6), np.random.default_rng(0))
    train, test = simulate_cohort(model, 20, np.random.default_rng(1)), simulate_cohort(model, 20, np.random.default_rng(2))
    train.covariates = train.covariates.drop(columns="group")
    test.covariates = test.covariates.drop(columns="group")
    ours, ours_held = harmonize_split("combat", train, test, [])
    peer, peer_held = harmonize_split("neuroCombat", train, test, [])
    np.testing.assert_allclose(ours, peer, rtol=1e-5)  # neuroCombat casts covariates to float32
    assert np.abs(ours_held - peer_held).max() > 0  # by design: neuroCombatFromTraining ignores the covariates


def test_ranking_puts_a_method_that_removes_the_site_effect_above_none():
    scores = pd.DataFrame([{**s, "cohort": r["cohort"], "method": r["method"], "replicate": r["replicate"],
                            "seconds": r["seconds"]}
                           for m in ("none", "combat") for r in [run_cell(Cell.of(SCENARIOS["additive"], m, 0, 0))]
                           for s in r["scores"]])
    ranked = rank_methods(scores)
    assert ranked["method"].tolist() == ["combat", "none"] and ranked["rank"].tolist() == [1, 2]
    assert recommend(ranked).startswith("Use combat without a transform")


# -- acceptance, on small matrices -----------------------------------------------------------------------

def test_gam_keeps_a_nonlinear_age_effect_that_linear_combat_distorts():
    assert _mean("nonlinear-age", "gam", "truth_correlation") > _mean("nonlinear-age", "combat", "truth_correlation") + 0.05
    assert _mean("nonlinear-age", "gam", "effect_bias") < _mean("nonlinear-age", "combat", "effect_bias")


def test_covbat_removes_more_site_covariance_than_combat():
    for split in ("train", "test"):
        assert _mean("covariance", "covbat", "covariance_left", split) < _mean("covariance", "combat",
                                                                                 "covariance_left", split) - 0.02


def test_a_log_transform_beats_plain_combat_on_skewed_features_at_the_distribution_level():
    assert _mean("skewed", "combat+log", "ad_fraction", replicates=4) < _mean("skewed", "combat", "ad_fraction",
                                                                                replicates=4)
    assert _mean("skewed", "combat", "out_of_range") > _mean("skewed", "combat+log", "out_of_range") == 0


def test_tiny_training_batches_create_site_effects_in_held_back_subjects():
    raw = _mean("null-batch-3", "none", "site_accuracy_excess")
    created = _mean("null-batch-3", "combat", "site_accuracy_excess")
    assert abs(raw) < 0.1 and created > raw + 0.15
    assert _mean("batch-3", "combat", "site_accuracy_excess") > _mean("batch-50", "combat", "site_accuracy_excess")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """The image-level scenario (phantoms on 3 scanner profiles, pyradiomics features) with none and combat."""
    out = tmp_path_factory.mktemp("image") / "run"
    result = compare_harmonizers(out, scenarios=["image-level"], methods=["combat"], replicates=3,
                                 executor="serial", progress=False)
    return out, result


def test_combat_lowers_the_image_level_site_effect_and_the_truth_correlation_is_reported(image_run):
    out, result = image_run
    held = result["scores"][result["scores"]["split"] == "test"]
    means = held.groupby(["method", "metric"])["value"].mean()
    chance = means["none", "chance"]
    assert chance == pytest.approx(1 / 3)
    assert means["none", "site_accuracy"] > 0.9  # the scanners are told apart from the features alone
    assert means["combat", "site_accuracy"] < means["none", "site_accuracy"] - 0.2
    correlation = held[held["metric"] == "truth_correlation"]
    assert len(correlation) == 2 * 3 and correlation["value"].between(-1, 1).all()
    assert means["combat", "truth_correlation"] > means["none", "truth_correlation"]
    assert [p.name[:len("image-level-seed0-")] for p in (out / "images").iterdir()] == ["image-level-seed0-"]
    scans = pd.read_parquet(next((out / "images").iterdir()))
    assert (scans.groupby("subject")["site"].nunique() == 3).all() and len(scans) == 3 * 60  # the truth is simulated


def test_a_resumed_image_level_run_does_not_extract_again(image_run, tmp_path, monkeypatch):
    out, first = image_run
    run = tmp_path / "run"
    shutil.copytree(out / "images", run / "images")

    def refuse(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(benchmark_workflow, "extract", refuse)
    again = compare_harmonizers(run, scenarios=["image-level"], methods=["combat"], replicates=3,
                                executor="serial", progress=False)
    columns = ["cohort", "method", "replicate", "split", "metric", "value"]
    pd.testing.assert_frame_equal(again["scores"][columns], first["scores"][columns])


def test_the_image_level_scenario_is_in_the_default_matrix_and_can_be_left_out(tmp_path, monkeypatch):
    assert isinstance(DEFAULT_MATRIX[-1], ImageScenario)
    monkeypatch.setitem(benchmark_workflow.MATRICES, "default", (SCENARIOS["additive"], ImageScenario()))
    result = compare_harmonizers(tmp_path, image=False, methods=["combat"], replicates=1, executor="serial",
                                 progress=False)
    assert set(result["scores"]["cohort"]) == {"additive"} and not (tmp_path / "images").exists()
    with pytest.raises(HarmonyError, match="unknown \\['image-level'\\]"):
        compare_harmonizers(tmp_path, scenarios=["image-level"], image=False)


def test_an_image_cohort_needs_its_truth_and_every_subject_on_every_scanner():
    with pytest.raises(ValueError, match="truth_"):
        image_cohort(pd.DataFrame({"f": [1.0, 2.0], "site": ["a", "b"], "subject": ["s0", "s0"]}))
    table = pd.DataFrame({"f": [1.0, 2.0, 3.0], "site": ["a", "b", "a"], "subject": ["s0", "s0", "s1"],
                          "truth_radius_mm": [1.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match="subject 's1' has \\['a'\\]"):
        image_cohort(table)


@pytest.fixture(scope="module")
def like_model():
    rng = np.random.default_rng(3)
    truth = scenario_model(Scenario("user", n_features=8, additive=1.0, multiplicative=0.4), rng)
    cohort = simulate_cohort(truth, 40, rng)
    return fit_cohort_model(pd.DataFrame(cohort.X), cohort.site, cohort.covariates[["age"]])


def test_the_sample_size_curve_falls_monotonically_within_its_uncertainty(like_model):
    results = [run_cell(Cell(f"user n={n}", like_model, "combat", r, 0, n, 30)) for n in (3, 10, 50) for r in range(4)]
    scores = pd.DataFrame([{**s, "n_train": res["n_train"], "replicate": res["replicate"]} for res in results
                           for s in res["scores"]])
    curve = sample_size_curve(scores, rng=np.random.default_rng(0))
    assert (curve["low"] <= curve["site_accuracy"]).all() and (curve["site_accuracy"] <= curve["high"]).all()
    assert (curve["site_accuracy"].to_numpy()[1:] <= curve["high"].to_numpy()[:-1]).all()
    assert curve["site_accuracy"].iloc[0] > curve["site_accuracy"].iloc[-1] + 0.1
    assert curve["at_chance"].iloc[-1] and not curve["at_chance"].iloc[0]  # the interval reaches chance only at 50


def test_fit_cohort_model_refuses_too_little_data():
    features = pd.DataFrame({"f": np.arange(8.0)})
    with pytest.raises(ValueError, match="site"):
        fit_cohort_model(features, np.array(["a"] * 6 + ["b"] * 2))
    with pytest.raises(ValueError, match="missing"):
        fit_cohort_model(features, np.repeat(["a", "b"], 4), pd.DataFrame({"age": [1.0] * 7 + [np.nan]}))


def test_fit_cohort_model_finds_the_skewed_features_and_their_covariate_effect():
    rng = np.random.default_rng(0)
    truth = scenario_model(Scenario("s", marginal="log", n_features=4), rng)
    cohort = simulate_cohort(truth, 200, rng)
    model = fit_cohort_model(pd.DataFrame(cohort.X), cohort.site, cohort.covariates[["group"]])
    assert model.marginal == ["log"] * 4
    np.testing.assert_allclose(model.coef[0], truth.coef[1], atol=0.08)  # the group effect, on the log scale


def test_the_site_accuracy_excess_is_over_the_biologys_own_site_signal():
    """Where the tissue differs by site, the scanner-free values tell the sites apart: keeping them scores 0,
    a method that also removed the tissue scores below 0 (and is ranked on the distance from 0)."""
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], 60)
    tissue = (rng.random(180) < np.array([0.1, 0.5, 0.9])[labels]).astype(float)  # site-confounded biology
    clean = tissue[:, None] * 2.0 + rng.normal(size=(180, 6))
    design = np.column_stack([np.ones(180), tissue])
    lower, upper = np.full(6, -np.inf), np.full(6, np.inf)
    kept = score_split(clean, clean, labels, design, None, lower, upper)
    assert kept["clean_site_accuracy"] > kept["chance"] + 0.15 and kept["site_accuracy_excess"] == 0
    removed = score_split(rng.normal(size=(180, 6)), clean, labels, design, None, lower, upper)
    assert removed["site_accuracy_excess"] < -0.1
    shifted = score_split(clean + labels[:, None] * 1.5, clean, labels, design, None, lower, upper)
    assert shifted["site_accuracy_excess"] > 0.2
