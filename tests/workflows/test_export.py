"""``harmony export``: per-variant wide tables and the stable, harmonized model table of a finished run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.core.files import file_digest
from harmony.workflows.export import export_run
from harmony.workflows.layout import FILES
from tests.cli.test_run import TINY


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    (base / "tiny.toml").write_text(TINY)
    run_dir = base / "run"
    assert main(["run", str(base / "tiny.toml"), "--out", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_export_writes_the_model_table_a_modeller_reads_in_one_line(finished_run, capsys):
    assert main(["export", str(finished_run)]) == 0
    assert "3 variant table(s) and model_table.parquet" in capsys.readouterr().out
    out = finished_run / "export"
    table = pd.read_parquet(out / "model_table.parquet")
    verdicts = pd.read_csv(finished_run / "reliability" / "stable_features.csv")
    stable = verdicts.loc[verdicts[schema.STABLE], schema.FEATURE].tolist()
    cases = pd.read_parquet(finished_run / FILES["cases"])
    identifiers = [schema.CASE_ID, schema.SITE] + schema.covariate_columns(cases)
    assert list(table.columns) == identifiers + stable
    assert len(table) == len(cases) and table[schema.CASE_ID].is_unique
    assert not any(c.startswith("truth_") or c in (schema.IMAGE, schema.MASK) for c in table.columns)
    harmonized = pd.read_parquet(finished_run / FILES["harmonized"])
    combat = harmonized[(harmonized[schema.STAGE] == "combat") & harmonized[schema.FEATURE].isin(stable)]
    expected = combat.pivot(index=schema.CASE_ID, columns=schema.FEATURE, values=schema.VALUE)
    np.testing.assert_array_equal(table.set_index(schema.CASE_ID).loc[expected.index, expected.columns],
                                  expected.to_numpy())
    sidecar = json.loads((out / "model_table.json").read_text())
    assert sidecar["sha256"] == file_digest(out / "model_table.parquet")
    assert sidecar["features"]["kept"] == stable and sidecar["features"]["rule"]["of"] == len(verdicts)
    assert sidecar["harmonization"]["source"] == FILES["harmonized"]
    assert sidecar["versions"]["pyradiomics_distribution"]


def test_export_per_variant_tables_hold_every_feature_value(finished_run, tmp_path):
    written = export_run(finished_run, tmp_path / "csv", fmt="csv")
    features = pd.read_parquet(finished_run / FILES["features"])
    assert set(written["features"]) == set(features[schema.VARIANT_ID].astype(str))
    for variant, path in written["features"].items():
        wide = pd.read_csv(path)
        rows = features[features[schema.VARIANT_ID] == variant]
        assert len(wide) == rows.groupby([schema.CASE_ID, schema.REPEAT], observed=True).ngroups
        assert int(wide.drop(columns=[schema.CASE_ID, schema.SITE, schema.REPEAT]).notna().to_numpy().sum()) \
            == int(rows[schema.VALUE].notna().sum())


def test_export_refuses_what_is_not_a_finished_run(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and len(err.strip().splitlines()) == 1
