"""``harmony harmonizers compare`` and ``like``: tables, report, resume, determinism across executors, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmony.cli import main
from harmony.harmonize.simulation import AGE, GROUP, simulate_site_features

COMPARE = ["harmonizers", "compare", "--scenarios", "additive,skewed", "--methods", "combat,combat+log",
           "--replicates", "2", "--quiet"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "run"
    assert main([*COMPARE, "--executor", "serial", "--out", str(out)]) == 0
    return out


def test_compare_writes_tidy_tables_and_a_report(compared, capsys):
    scores = pd.read_parquet(compared / "scores.parquet")
    assert set(scores["method"]) == {"none", "combat", "combat+log"}
    assert set(scores["split"]) == {"train", "test"} and set(scores["replicate"]) == {0, 1}
    ranked = pd.read_parquet(compared / "ranked.parquet")
    assert ranked["rank"].tolist() == list(range(1, 4))
    page = (compared / "report.html").read_text()
    assert "Recommendation" in page and "Ranked methods" in page and "neuroHarmonize" in page
    assert len(list((compared / "cells").glob("*.json"))) == 2 * 2 * 3


def test_compare_is_identical_on_worker_processes(compared, tmp_path):
    assert main([*COMPARE, "--executor", "processes", "--workers", "2", "--out", str(tmp_path)]) == 0
    columns = ["cohort", "method", "replicate", "split", "metric", "value"]
    serial = pd.read_parquet(compared / "scores.parquet")[columns]
    pooled = pd.read_parquet(tmp_path / "scores.parquet")[columns]
    pd.testing.assert_frame_equal(serial, pooled)


def test_compare_resumes_only_the_missing_cells(compared, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(compared, run)
    cells = sorted((run / "cells").glob("*.json"))
    removed, kept = cells[0], cells[1]
    before = kept.stat().st_mtime_ns
    removed.unlink()
    assert main([*COMPARE, "--executor", "serial", "--out", str(run)]) == 0
    assert removed.exists() and kept.stat().st_mtime_ns == before
    resumed, first = (pd.read_parquet(path / "scores.parquet").drop(columns="seconds") for path in (run, compared))
    pd.testing.assert_frame_equal(resumed, first)


@pytest.fixture(scope="module")
def user_table(tmp_path_factory):
    cases, features = simulate_site_features(n_cases=120, n_features=6, n_sites=3, skewed=True,
                                             rng=np.random.default_rng(5))
    folder = tmp_path_factory.mktemp("user")
    features.to_parquet(folder / "features.parquet")
    cases.to_csv(folder / "cases.csv", index=False)
    wide = features.pivot(index="case_id", columns="feature", values="value").reset_index()
    wide.merge(cases[["case_id", "site", AGE, GROUP]], on="case_id").to_csv(folder / "wide.csv", index=False)
    return folder


def test_like_my_data_gives_a_recommendation_and_a_curve(user_table, tmp_path, capsys):
    out = tmp_path / "like"
    assert main(["harmonizers", "like", str(user_table / "features.parquet"), "--cases", str(user_table / "cases.csv"),
                 "--covariates", f"{AGE},{GROUP}", "--methods", "combat,combat+log,gam", "--replicates", "1",
                 "--curve-replicates", "2", "--executor", "serial", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Use " in printed and "training subjects per site" in printed
    curve = pd.read_parquet(out / "curve.parquet")
    assert set(curve["n_train"]) == {3, 5, 10, 20, 50, 100} and (curve["low"] <= curve["high"]).all()
    page = (out / "report.html").read_text()
    assert "How many subjects per site" in page and "Recommendation" in page


def test_like_my_data_reads_a_wide_table(user_table, tmp_path):
    from harmony.workflows.benchmark import read_user_table

    wide, site, covariates = read_user_table(user_table / "wide.csv", covariates=[AGE, GROUP])
    long, site_long, _ = read_user_table(user_table / "features.parquet", cases_path=user_table / "cases.csv",
                                         covariates=[AGE, GROUP])
    assert wide.shape == (120, 6) and list(covariates.columns) == [AGE, GROUP]
    np.testing.assert_allclose(wide.to_numpy(float), long.to_numpy(float))
    assert (site == site_long).all()


@pytest.mark.parametrize("argv, message", [
    (["--covariates", "height"], "no column 'height'"),
    (["--site", "scanner"], "no column 'scanner'"),
    (["--methods", "magic"], "unknown or not installed ['magic']"),
])
def test_like_my_data_bad_input_is_one_line_and_exit_2(user_table, tmp_path, capsys, argv, message):
    code = main(["harmonizers", "like", str(user_table / "wide.csv"), *argv, "--quiet", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_compare_refuses_an_unknown_scenario(tmp_path, capsys):
    assert main(["harmonizers", "compare", "--scenarios", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err


def test_compare_refuses_when_no_method_applies_and_keeps_the_cells(tmp_path, capsys):
    argv = ["harmonizers", "compare", "--scenarios", "additive", "--methods", "nested", "--replicates", "1",
            "--executor", "serial", "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no method applies: nested: nested needs several batch variables" in err
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2  # none and nested: computed, not lost
