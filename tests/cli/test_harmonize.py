"""``harmony harmonize``: fit or apply a saved model end to end, and the options it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


# -- wide tables ------------------------------------------------------------------------------------------

def _messy_wide(tmp_path, cohort):
    """The cohort as a wide CSV with what real tables hold: #NAME? cells, a one-subject site, missing ages."""
    cases, features = cohort
    wide = features.pivot(index=schema.CASE_ID, columns=schema.FEATURE, values=schema.VALUE)
    frame = cases.set_index(schema.CASE_ID)[[schema.SITE, AGE, GROUP]].join(wide).reset_index()
    frame = frame.rename(columns={schema.CASE_ID: "SubjectID", schema.SITE: "Manufacturer"}).astype(
        {"feature001": object, AGE: object})
    frame.loc[[3, 9], "feature001"] = "#NAME?"
    frame.loc[[1, 2, 5, 8], AGE] = ""
    frame.loc[len(frame)] = frame.loc[0].to_dict() | {"SubjectID": "lonely", "Manufacturer": "Toshiba"}
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_cli_harmonizes_a_wide_table_in_one_command(cohort, tmp_path, capsys):
    path, frame = _messy_wide(tmp_path, cohort)
    out = tmp_path / "out"
    code = main(["harmonize", str(path), "--id", "SubjectID", "--batch", "Manufacturer", "--covariates",
                 f"{AGE},{GROUP}", "--missing", "drop-subjects", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "154 subjects x 12 features kept; dropped 7 subjects (4 without 'age', 2 missing feature values, " \
           "1 in a Manufacturer of fewer than 2 subjects)" in printed
    harmonized = pd.read_csv(out / "harmonized.csv")
    assert list(harmonized.columns) == list(frame.columns) and len(harmonized) == 154
    assert not set(harmonized["SubjectID"]) & {"lonely", frame.loc[1, "SubjectID"], frame.loc[3, "SubjectID"]}
    dropped = pd.read_csv(out / "dropped.csv")
    assert len(dropped) == 7 and set(dropped["kind"]) == {"subject"}
    # the wide output holds the long output's combat values
    long = read_table(out / "harmonized.parquet", schema.HARMONIZED)
    combat = long[long[schema.STAGE] == "combat"].pivot(index=schema.CASE_ID, columns=schema.FEATURE,
                                                        values=schema.VALUE)
    wide = harmonized.set_index("SubjectID")[combat.columns]
    np.testing.assert_array_equal(wide.loc[combat.index].to_numpy(), combat.to_numpy())


def test_cli_wide_table_refusals(cohort, tmp_path, capsys):
    path, _ = _messy_wide(tmp_path, cohort)
    code = main(["harmonize", str(path), "--batch", "Manufacturer", "--out", str(tmp_path / "a")])
    assert code == 2 and "give --id COLUMN" in capsys.readouterr().err
    code = main(["harmonize", str(path), "--id", "SubjectID", "--batch", "Manufacturer", "--covariates", AGE,
                 "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "4 subject(s) without 'age'" in err and "--missing drop-subjects" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b" / "harmonized.csv").exists()
