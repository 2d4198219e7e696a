"""neuroHarmonize in the benchmark, run in its own environment: agreement with harmony's ComBat and GAM, the
command with it, and a bad or absent environment.

The environment is ``$HARMONY_NEUROHARMONIZE_PYTHON`` or ``.venv-nh/bin/python`` (``make neuroharmonize`` builds
it); without it these tests skip, and fail under CI.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from harmony.cli import main
from harmony.core.errors import HarmonyError
from harmony.harmonize.benchmark.adapters import (
    NotApplicable,
    available_methods,
    harmonize_split,
)
from harmony.harmonize.benchmark.cohorts import (
    Scenario,
    scenario_model,
    simulate_cohort,
)
from harmony.harmonize.benchmark.external import (
    NEUROHARMONIZE_PYTHON_ENV,
    check_neuroharmonize,
    run_neuroharmonize,
)
from harmony.harmonize.gam import ComBatGAM
from tests.conftest import ROOT, in_ci


@pytest.fixture(scope="session")
def nh_python() -> str:
    python = os.environ.get(NEUROHARMONIZE_PYTHON_ENV) or str(ROOT / ".venv-nh" / "bin" / "python")
    try:
        check_neuroharmonize(python)
        return python
    except HarmonyError as exc:
        message = f"no neuroHarmonize environment ({exc}); build it with `make neuroharmonize`"
    if in_ci():
        pytest.fail(f"{message}; under CI=true a correctness test fails instead of skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def cohort():
    """Three sites, 20 training and 20 held-back subjects each, age (float32-exact: neuroCombat casts covariates
    to float32) and group."""
    model = scenario_model(Scenario("plain", n_features=8), np.random.default_rng(0))
    train, test = (simulate_cohort(model, 20, np.random.default_rng(seed)) for seed in (1, 2))
    for split in (train, test):
        split.covariates["age"] = split.covariates["age"].astype(np.float32).astype(float)
    return train, test


def test_linear_neuroharmonize_is_harmony_combat_on_training_and_held_back_subjects(nh_python, cohort):
    train, test = cohort
    peer, peer_held = harmonize_split("neuroHarmonize", train, test, ["age"], neuroharmonize_python=nh_python)
    ours, ours_held = harmonize_split("combat", train, test, ["age"])
    np.testing.assert_allclose(peer, ours, rtol=0, atol=1e-10)  # measured 1e-14
    np.testing.assert_allclose(peer_held, ours_held, rtol=0, atol=1e-10)  # harmonizationApply vs transform
    assert np.abs(peer_held - test.X).max() > 0.1


def test_neuroharmonize_gam_is_harmony_gam_given_its_penalties_and_repeats(nh_python, cohort):
    train, test = cohort
    group = [(split.covariates["group"] == "patient").to_numpy(float) for split in (train, test)]
    age = train.covariates["age"].to_numpy()
    held_age = test.covariates["age"].clip(age.min(), age.max()).to_numpy()
    out, held, alpha = run_neuroharmonize(nh_python, (train.X, train.site, np.column_stack([age, group[0]])),
                                          (test.X, test.site, np.column_stack([held_age, group[1]])),
                                          ["age", "group"], ["age"])
    assert len(alpha) == train.X.shape[1] and len({a[0] for a in alpha}) > 1  # one penalty per feature, not one
    ours = ComBatGAM(smooth={"age": {"alpha": [a[0] for a in alpha]}})
    fitted = ours.fit_transform(train.X, batch=train.site, covariates=pd.DataFrame({"age": age, "group": group[0]}))
    applied = ours.transform(test.X, batch=test.site, covariates=pd.DataFrame({"age": held_age, "group": group[1]}))
    np.testing.assert_allclose(out, fitted, rtol=0, atol=1e-9)  # measured 5e-11
    np.testing.assert_allclose(held, applied, rtol=0, atol=1e-9)
    again = harmonize_split("neuroHarmonize-gam", train, test, ["age"], neuroharmonize_python=nh_python)
    np.testing.assert_array_equal(again[0], out)  # the adapter is this call; its CV folds come from seed 0
    np.testing.assert_array_equal(again[1], held)


def test_a_failure_of_neuroharmonize_on_a_cohort_is_not_applicable_with_its_reason(nh_python, cohort):
    train, test = (replace(split, covariates=split.covariates.assign(flag=(split.site == cohort[0].site[0]) * 1.0))
                   for split in cohort)  # a covariate that is one of the sites: a singular design
    with pytest.raises(NotApplicable, match="LinAlgError: Singular matrix"):
        harmonize_split("neuroHarmonize", train, test, [], neuroharmonize_python=nh_python)


def test_compare_ranks_neuroharmonize_and_records_its_environment(nh_python, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(NEUROHARMONIZE_PYTHON_ENV, nh_python)  # the option's default
    assert main(["harmonizers", "compare", "--scenarios", "additive,nonlinear-age", "--methods",
                 "combat,neuroHarmonize,neuroHarmonize-gam", "--replicates", "1", "--executor", "serial", "--quiet",
                 "--out", str(tmp_path)]) == 0
    ranked = pd.read_parquet(tmp_path / "ranked.parquet")
    assert {"neuroHarmonize", "neuroHarmonize-gam", "combat", "none"} == set(ranked["method"])
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    held = scores[(scores["split"] == "test") & (scores["metric"] == "site_accuracy")]
    accuracy = held.groupby(["cohort", "method"])["value"].mean()
    for method in ("neuroHarmonize", "neuroHarmonize-gam"):
        for cohort_name in ("additive", "nonlinear-age"):
            assert accuracy[cohort_name, method] < accuracy[cohort_name, "none"] - 0.2, (cohort_name, method)
    assert np.isfinite(scores.loc[scores["method"].str.startswith("neuroHarmonize"), "value"].dropna()).all()
    # same covariates, same algorithm: linear neuroHarmonize scores as harmony's ComBat (to float32 rounding)
    wide = held.set_index(["cohort", "method"])["value"]
    assert wide["additive", "neuroHarmonize"] == pytest.approx(wide["additive", "combat"], abs=0.02)
    versions = json.loads((tmp_path / "manifest.json").read_text())["versions"]
    assert versions["neuroHarmonize"] == "2.5.2" and "numpy=1." in versions["neuroHarmonize_environment"]
    assert "neuroHarmonize 2.5.2 ran in its own environment" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("python, message", [
    ("/no/such/python", "no such file"),
    (sys.executable, "neuroHarmonize is not importable there (ModuleNotFoundError"),
])
def test_a_bad_neuroharmonize_python_is_one_line_and_exit_2(tmp_path, capsys, python, message):
    code = main(["harmonizers", "compare", "--scenarios", "additive", "--neuroharmonize-python", python,
                 "--quiet", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and repr(python) in err
    assert not (tmp_path / "cells").exists()  # refused before any work


def test_the_environment_variable_is_the_default_and_checked_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(NEUROHARMONIZE_PYTHON_ENV, "/no/such/python")
    assert main(["harmonizers", "like", str(tmp_path / "any.csv"), "--methods", "neuroHarmonize", "--quiet",
                 "--out", str(tmp_path)]) == 2
    assert "'/no/such/python'" in capsys.readouterr().err


def test_without_an_environment_there_is_a_note_and_no_neuroharmonize_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(NEUROHARMONIZE_PYTHON_ENV, raising=False)
    assert not {"neuroHarmonize", "neuroHarmonize-gam"} & set(available_methods())
    assert main(["harmonizers", "compare", "--scenarios", "additive", "--methods", "neuroHarmonize", "--quiet",
                 "--out", str(tmp_path)]) == 2
    assert "need --neuroharmonize-python" in capsys.readouterr().err
    assert main(["harmonizers", "compare", "--scenarios", "additive", "--methods", "combat", "--replicates", "1",
                 "--executor", "serial", "--quiet", "--out", str(tmp_path)]) == 0
    assert not pd.read_parquet(tmp_path / "ranked.parquet")["method"].str.startswith("neuroHarmonize").any()
    page = (tmp_path / "report.html").read_text()
    assert "neuroHarmonize is not configured" in page and "pip install neuroHarmonize==2.5.2" in page
