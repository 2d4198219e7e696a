"""``harmony harmonizers like`` on a real multi-site radiomics table (tests/data/real_multisite): the table is
what its script makes, its ground truth says ComBat helps, and the command gives a recommendation and a curve."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from harmony.cli import main
from harmony.harmonize import ComBat
from harmony.harmonize.benchmark.cells import sample_size_curve
from harmony.harmonize.benchmark.scores import balanced_site_accuracy
from tests.conftest import reference_path

COVARIATES = ["tissue", "radius_mm"]
SCANNERS = ["ct_lowdose_3mm", "ct_sharp_1mm", "ct_smooth_5mm", "ct_standard_2mm_offset"]
LIKE = ["--covariates", ",".join(COVARIATES), "--methods", "combat,combat+auto,gam", "--replicates", "1",
        "--curve-replicates", "2", "--executor", "serial", "--quiet"]


@pytest.fixture(scope="module")
def folder():
    return reference_path("real_multisite")


@pytest.fixture(scope="module")
def tables(folder):
    features, truth = pd.read_csv(folder / "features.csv"), pd.read_csv(folder / "truth.csv")
    return features, truth, [c for c in features.columns if c.startswith("original_")]


def test_the_table_is_multi_site_with_a_truth_of_its_own(tables):
    features, truth, names = tables
    counts = features["site"].value_counts()
    assert sorted(counts.index) == SCANNERS and counts.min() >= 8 and 60 <= len(features) <= 120
    assert set(features["tissue"]) == {"lesion", "lung", "soft"} and len(names) >= 50
    assert truth["case_id"].tolist() == features["case_id"].tolist() and list(truth.columns[1:]) == names
    assert np.isfinite(features[names].to_numpy()).all() and np.isfinite(truth[names].to_numpy()).all()


def test_the_stored_table_is_what_its_script_produces(folder, tables):
    """Three rows (a lung sphere, a soft-tissue sphere, the lesion) rebuilt from the real image, on their own."""
    spec = importlib.util.spec_from_file_location("make_table", folder / "make_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    features, truth, names = tables
    rows = [int(features.index[features["tissue"] == t][1]) for t in ("lung", "soft", "lesion")]
    got, got_truth = script.subject_rows(rows)
    stored = features.iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[COVARIATES + ["case_id", "site"]], stored[COVARIATES + ["case_id", "site"]])
    np.testing.assert_allclose(got[names].to_numpy(), stored[names].to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(got_truth[names].to_numpy(), truth.iloc[rows][names].to_numpy(), rtol=1e-12, atol=0)


def _pearson(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    a, b = (A - A.mean(axis=0)) / A.std(axis=0), (B - B.mean(axis=0)) / B.std(axis=0)
    return (a * b).mean(axis=0)


def test_combat_brings_the_real_features_towards_their_scanner_free_values(tables):
    """Within each tissue class, ComBat (with the biology as covariates) raises the features' correlation with
    the same ROI on the unmodified image, and the site can no longer be told from the features."""
    features, truth, names = tables
    X, clean, site = features[names].to_numpy(), truth[names].to_numpy(), features["site"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        harmonized = np.asarray(ComBat().fit_transform(X, batch=site, covariates=features[COVARIATES]))
    for tissue in ("lung", "soft"):
        rows = (features["tissue"] == tissue).to_numpy()
        raw, after = _pearson(X[rows], clean[rows]), _pearson(harmonized[rows], clean[rows])
        assert after.mean() > raw.mean() + 0.03, tissue
        assert (after > raw).mean() > 0.6, tissue
    raw_accuracy, chance = balanced_site_accuracy(X, site)
    truth_accuracy, _ = balanced_site_accuracy(clean, site)  # the tissue mix differs by site: a little above chance
    harmonized_accuracy, _ = balanced_site_accuracy(harmonized, site)
    assert raw_accuracy > chance + 0.3 and truth_accuracy < chance + 0.15 and harmonized_accuracy < chance + 0.05


@pytest.fixture(scope="module")
def liked(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("like-real") / "wide"
    assert main(["harmonizers", "like", str(folder / "features.csv"), *LIKE, "--out", str(out)]) == 0
    return out


def test_like_on_the_real_table_gives_a_recommendation_and_a_curve(liked):
    page = (liked / "report.html").read_text()
    assert "<h2>Recommendation</h2><p>Use combat" in page and "training subjects per site" in page
    assert 'alt="sample-size curve"' in page and (liked / "figures" / "sample_size.png").stat().st_size > 1000
    curve = pd.read_parquet(liked / "curve.parquet")
    assert {"low", "high", "replicates", "at_chance", "enough"} <= set(curve.columns)
    assert set(curve["n_train"]) == {3, 5, 10, 20, 50, 100} and (curve["low"] <= curve["high"]).all()
    assert curve["clean_accuracy"].mean() > curve["chance"].mean() + 0.03  # the tissue mix differs by site
    model = json.loads((liked / "model.json").read_text())
    assert model["sites"] == SCANNERS
    assert model["terms"][0] == {"column": "tissue", "kind": "level", "levels": ["lesion", "lung", "soft"]}
    assert model["terms"][1]["column"] == "radius_mm" and model["terms"][1]["kind"] == "linear"
    assert "gam did not apply" in page and "radius_mm" in page  # 4 distinct radii: no spline, said in words


def test_like_on_the_long_form_of_the_real_table_is_the_same(folder, tables, liked, tmp_path):
    features, _, names = tables
    long = features.melt(id_vars=["case_id", "site", *COVARIATES], value_vars=names, var_name="feature",
                         value_name="value")
    long.to_parquet(tmp_path / "long.parquet")
    out = tmp_path / "long"
    assert main(["harmonizers", "like", str(tmp_path / "long.parquet"), *LIKE, "--out", str(out)]) == 0
    assert json.loads((out / "model.json").read_text()) == json.loads((liked / "model.json").read_text())
    columns = ["rank", "method", "score", "site_accuracy_excess", "truth_correlation"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ranked.parquet")[columns],
                                  pd.read_parquet(liked / "ranked.parquet")[columns])


def test_the_curve_reaches_chance_at_the_biologys_own_site_signal():
    """Where the scanner-free subjects themselves tell the sites apart above 1/k, harmonizing cannot (and must
    not) bring the accuracy lower: the curve's target is that level."""
    rows = [{"n_train": n, "replicate": r, "split": "test", "metric": metric, "value": value}
            for n, accuracy in ((10, 0.55), (50, 0.36)) for r in range(4)
            for metric, value in (("site_accuracy", accuracy + 0.01 * r), ("chance", 0.25),
                                  ("clean_site_accuracy", 0.33), ("truth_correlation", 0.9), ("effect_bias", 0.05))]
    scores = pd.DataFrame(rows)
    curve = sample_size_curve(scores, rng=np.random.default_rng(0))
    assert curve["at_chance"].tolist() == [False, True] and curve["clean_accuracy"].tolist() == [0.33, 0.33]
    blind = sample_size_curve(scores[scores["metric"] != "clean_site_accuracy"], rng=np.random.default_rng(0))
    assert blind["at_chance"].tolist() == [False, False] and blind["clean_accuracy"].isna().all()


def test_like_refuses_when_no_method_applies(folder, tmp_path, capsys):
    code = main(["harmonizers", "like", str(folder / "features.csv"), "--covariates", "tissue,radius_mm",
                 "--methods", "gam", "--replicates", "1", "--executor", "serial", "--quiet", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cohorts like this table: no method applies: gam: HarmonizationError: covariate 'radius_mm' has 4 distinct" in err
