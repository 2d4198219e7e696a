"""`harmony reliability`: a features table in, the reliability table, verdicts and pairwise CCC out."""

from __future__ import annotations

import pandas as pd

from harmony.cli import main
from harmony.core import schema
from harmony.core.schema import FEATURE, PERTURBATION, REASON
from tests.conftest import perturbed_features


def test_reliability_end_to_end(tmp_path, capsys):
    features, variants = perturbed_features(n_cases=12)
    features.to_parquet(tmp_path / "features.parquet")
    variants.to_parquet(tmp_path / "variants.parquet")  # found beside the features
    out = tmp_path / "out"
    code = main(["reliability", str(tmp_path / "features.parquet"), "--out", str(out), "--quiet",
                 "--set", "reliability.bootstrap=100", "--set", "reliability.icc=ICC(C,1)"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "ICC(C,1) categories per perturbation" in printed and "mask+noise" in printed
    assert "2 of 4 features stable" in printed
    table = pd.read_parquet(out / "reliability.parquet")
    schema.RELIABILITY.validate(table)
    assert set(table[PERTURBATION]) == {"discretisation", "mask", "noise", "mask+noise", "all"}
    verdicts = pd.read_csv(out / "stable_features.csv")
    assert verdicts.set_index(FEATURE).loc["noisy", "worst_perturbation"] in {"noise", "mask+noise"}
    assert "ICC(C,1)" in verdicts.set_index(FEATURE).loc["noisy", REASON]
    assert len(pd.read_parquet(out / "ccc_pairwise.parquet")) == 4 * 5
    assert (out / "manifest.json").is_file()


def test_bad_setting_is_one_line_and_exit_two(tmp_path, capsys):
    features, _ = perturbed_features(n_cases=4)
    features.to_parquet(tmp_path / "f.parquet")
    code = main(["reliability", str(tmp_path / "f.parquet"), "--out", str(tmp_path / "o"),
                 "--set", "reliability.judge_on=median"])
    err = capsys.readouterr().err
    assert code == 2 and "--set: reliability.judge_on: must be one of" in err
    code = main(["reliability", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")])
    assert code == 2 and "missing.parquet" in capsys.readouterr().err
