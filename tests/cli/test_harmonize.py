"""``harmony harmonize``: fit or apply a saved model end to end, and the options it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.core.files import read_json, read_table
from harmony.harmonize.combat import ComBat
from harmony.harmonize.features import harmonization_inputs
from harmony.harmonize.simulation import AGE, GROUP, simulate_site_features


@pytest.fixture(scope="module")
def cohort():
    return simulate_site_features(n_cases=160, n_features=12, rng=np.random.default_rng(0))


@pytest.mark.slow
def test_cli_harmonize_end_to_end(cohort, tmp_path, capsys):
    cases, features = cohort
    features.to_parquet(tmp_path / "features.parquet")
    cases.assign(image="not-read.nrrd", mask="not-read.nrrd").to_csv(tmp_path / "cases.csv", index=False)
    cases.to_parquet(tmp_path / "cases.parquet")
    out = tmp_path / "out"
    code = main(["harmonize", str(tmp_path / "features.parquet"), "--cases", str(tmp_path / "cases.csv"),
                 "--covariates", f"{AGE},{GROUP}", "--transform", "yeo-johnson", "--ref-batch", "scanner2",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "site_classifier_accuracy" in printed and "harmonized 160 cases" in printed
    for name in ("harmonized.parquet", "model.json", "site_effects.parquet", "harmonization_summary.parquet",
                 "truth_correlation.parquet", "covariate_effects.parquet", "manifest.json"):
        assert (out / name).is_file(), name
    first = read_table(out / "harmonized.parquet", schema.HARMONIZED)
    ref = first[(first[schema.SITE] == "scanner2")]
    raw, combat = (ref[ref[schema.STAGE] == s][schema.VALUE].to_numpy() for s in ("raw", "combat"))
    np.testing.assert_array_equal(raw, combat)
    model = ComBat.load(out / "model.json")  # --transform is ComBat's feature_transform
    assert model.get_params() == {"parametric": True, "eb": True, "mean_only": False, "ref_batch": "scanner2",
                                  "feature_transform": "yeo-johnson", "min_batch_size": 10}
    assert read_json(out / "manifest.json")["config"]["feature_transform"] == "yeo-johnson"

    again = tmp_path / "again"
    assert main(["harmonize", str(tmp_path / "features.parquet"), "--cases", str(tmp_path / "cases.parquet"),
                 "--model", str(out / "model.json"), "--out", str(again)]) == 0
    second = read_table(again / "harmonized.parquet", schema.HARMONIZED)
    np.testing.assert_allclose(second[schema.VALUE], first[schema.VALUE], rtol=0, atol=1e-10)

    code = main(["harmonize", str(tmp_path / "features.parquet"), "--cases", str(tmp_path / "cases.csv"),
                 "--covariates", "height", "--out", str(tmp_path / "bad")])
    assert code == 2 and "height" in capsys.readouterr().err


def test_cli_harmonize_model_refuses_options_it_would_ignore(cohort, tmp_path, capsys):
    cases, features = cohort
    features.to_parquet(tmp_path / "features.parquet")
    cases.to_parquet(tmp_path / "cases.parquet")
    _, X, site, cov = harmonization_inputs(features, cases, covariates=[AGE, GROUP])
    model = ComBat().fit(X, batch=site, covariates=cov).save(tmp_path / "model.json")
    common = ["harmonize", str(tmp_path / "features.parquet"), "--cases", str(tmp_path / "cases.parquet"),
              "--model", str(model), "--out", str(tmp_path / "out")]
    assert main(common + ["--transform", "log", "--no-eb"]) == 2
    assert "drop ['--transform', '--no-eb']" in capsys.readouterr().err
    assert main(common + ["--covariates", AGE]) == 2
    assert f"the model was fitted with ['{AGE}', '{GROUP}']; missing ['{GROUP}']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written on bad input
