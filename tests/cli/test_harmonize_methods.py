"""``harmony harmonize --method``: every method of the registry end to end on a small simulated table."""

from __future__ import annotations

import numpy as np
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.core.files import read_json, read_table
from harmony.harmonize.methods import REGISTRY, load_model
from harmony.harmonize.simulation import AGE, simulate_site_features

FLAGS = {
    "combat": [],
    "gam": ["--smooth", AGE],
    "covbat": ["--pc-variance", "0.9"],
    "nested": ["--batch-columns", "vendor,kernel", "--order", "given"],
    "gmm": ["--batch-columns", "site"],
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    cases, features = simulate_site_features(n_cases=80, n_features=6, rng=np.random.default_rng(3))
    site = cases[schema.SITE]
    cases = cases.assign(vendor=np.where(site.isin(["scanner1", "scanner2"]), "A", "B"),
                         kernel=np.where(site.isin(["scanner1", "scanner3"]), "soft", "sharp"))
    folder = tmp_path_factory.mktemp("methods")
    features.to_parquet(folder / "features.parquet")
    cases.to_parquet(folder / "cases.parquet")
    return folder


@pytest.mark.parametrize("method", list(REGISTRY))
def test_each_method_end_to_end_and_its_model_applies_again(tables, tmp_path, method, capsys):
    out = tmp_path / "out"
    args = ["harmonize", str(tables / "features.parquet"), "--cases", str(tables / "cases.parquet"),
            "--covariates", AGE, "--method", method, *FLAGS[method], "--folds", "3", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert "harmonized 80 cases" in capsys.readouterr().out
    saved = read_json(out / "model.json")
    assert saved["method"] == method and saved["format"] == REGISTRY[method].format
    assert read_json(out / "manifest.json")["config"]["method"] == method
    assert type(load_model(out / "model.json")) is REGISTRY[method].estimator
    first = read_table(out / "harmonized.parquet", schema.HARMONIZED)
    combat = first[first[schema.STAGE] == "combat"]
    assert np.isfinite(combat[schema.VALUE]).all()
    assert not np.allclose(combat[schema.VALUE], first[first[schema.STAGE] == "raw"][schema.VALUE])
    again = tmp_path / "again"
    assert main(["harmonize", str(tables / "features.parquet"), "--cases", str(tables / "cases.parquet"),
                 "--model", str(out / "model.json"), "--folds", "3", "--out", str(again)]) == 0
    second = read_table(again / "harmonized.parquet", schema.HARMONIZED)
    np.testing.assert_allclose(second[schema.VALUE], first[schema.VALUE], rtol=0, atol=1e-9)


@pytest.mark.parametrize(("args", "message"), [
    (["--smooth", AGE], "--smooth applies to --method gam, not combat"),
    (["--method", "covbat", "--pc-variance", "1.5"], "pc_variance: must be <= 1.0, got 1.5"),
    (["--method", "covbat", "--transform", "log"], "method 'covbat' does not take --transform"),
    (["--method", "gam"], "method 'gam' needs smooth covariates"),
    (["--method", "nested", "--batch-columns", "vendor,scanner_room"], "batch column(s) ['scanner_room']"),
    (["--method", "nested", "--order", "sideways"], "order: must be one of"),
])
def test_method_options_are_checked_with_one_line(tables, tmp_path, args, message, capsys):
    code = main(["harmonize", str(tables / "features.parquet"), "--cases", str(tables / "cases.parquet"),
                 *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
