"""`harmony gate ibsi --ct-phantom / --params`: the IBSI 1 CT phantom, configurations A-E, both standards."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from harmony.cli import main
from harmony.gate import ibsi_ct
from harmony.gate.ibsi_params import params_deviations
from tests.conftest import reference_path

#: Features agreeing with the IBSI (3 significant digits, within tolerance), plain pyradiomics-bhklab 3.1.4.
PLAIN_PASSES = {"A": 104, "B": 52, "C": 21, "D": 19, "E": 10}


@pytest.fixture(scope="session")
def ct_folder():
    return reference_path("ibsi1_ct_phantom")


@pytest.fixture(scope="session")
def ct_tables(ct_folder) -> dict[str, pd.DataFrame]:
    """Each configuration's table, computed once; C with the ablation that names each failure's step."""
    phantom = ibsi_ct.load_ct_phantom(ct_folder)
    return {c: ibsi_ct.ct_compliance(phantom, c, explain=c == "C") for c in ibsi_ct.CT_CONFIGS}


@pytest.mark.parametrize("config", ibsi_ct.CT_CONFIGS)
def test_ibsi_mode_agrees_with_every_mapped_feature(ct_tables, config):
    table = ct_tables[config]
    ibsi = table[table.standard == "ibsi"]
    assert len(ibsi) == 109
    assert ibsi["pass"].all(), ibsi.loc[~ibsi["pass"], ["feature", "value", "reference", "tolerance"]]
    plain = table[table.standard == "pyradiomics"]
    assert int(plain["pass"].sum()) == PLAIN_PASSES[config]
    assert (plain.loc[~plain["pass"], "reason"] != "").all()


def test_failures_are_put_down_to_the_step_that_causes_them(ct_tables):
    plain = ct_tables["C"].set_index("feature").query("standard == 'pyradiomics'")
    assert "bins counted from a multiple of the bin width" in plain.loc["original_glcm_JointAverage", "reason"]
    assert "excess kurtosis" in plain.loc["original_firstorder_Kurtosis", "reason"]
    assert "deprecated in pyradiomics" in plain.loc["original_glcm_SumVariance", "reason"]
    assert "nearest neighbour" in plain.loc["original_firstorder_Mean", "reason"]
    unexplained = plain[~plain["pass"] & plain.reason.str.startswith("unexplained")]
    assert unexplained.empty


def test_reference_values_are_the_ibsi_tables(ct_folder):
    """The package data equals the IBSI's own reference files, row for row (2D configurations: 2.5D rows)."""
    shipped = ibsi_ct.ct_reference_values()
    for config in ibsi_ct.CT_CONFIGS:
        source = pd.read_csv(ct_folder / f"reference_values_config_{config}.csv", encoding="utf-8-sig")
        source = source.set_index("tag")
        ours = shipped[shipped.config == config].set_index("tag")
        assert len(ours) == 109
        pd.testing.assert_series_equal(ours["reference_value"], source.loc[ours.index, "reference value"].astype(float),
                                       check_names=False)
        pd.testing.assert_series_equal(ours["tolerance"], source.loc[ours.index, "tolerance"].astype(float),
                                       check_names=False)
        if config in "AB":
            assert not any(t.endswith(("_3D", "_3D_avg")) for t in ours.index)


def test_cli_writes_markdown_csv_and_junit(ct_folder, tmp_path, capsys):
    assert main(["gate", "ibsi", "--ct-phantom", str(ct_folder), "--config", "D", "--no-explain",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ibsi     109    109" in out and "pyradiomics      19    109" in out
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("218", "0", "90")
    assert "| D | ibsi | 109 of 109 |" in (tmp_path / "ibsi_ct.md").read_text()
    assert len(pd.read_csv(tmp_path / "ibsi_ct.csv")) == 218


def test_cli_exits_1_when_ibsi_mode_misses_a_feature(ct_tables, ct_folder, tmp_path, monkeypatch, capsys):
    broken = ct_tables["D"].copy()
    row = broken.index[(broken.standard == "ibsi") & (broken.feature == "original_glcm_Contrast")][0]
    broken.loc[row, ["pass", "reason"]] = [False, "unexplained difference in IBSI mode"]
    monkeypatch.setattr(ibsi_ct, "ct_compliance", lambda *a, **k: broken)
    assert main(["gate", "ibsi", "--ct-phantom", str(ct_folder), "--config", "D", "--out", str(tmp_path)]) == 1
    assert "original_glcm_Contrast" in capsys.readouterr().err
    assert ET.parse(tmp_path / "junit.xml").getroot().get("failures") == "1"


def test_cli_names_a_missing_phantom_in_one_line(tmp_path, capsys):
    assert main(["gate", "ibsi", "--ct-phantom", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "image.nii.gz" in err and "nowhere" in err


def test_params_deviations_name_what_ibsi_mode_removes(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("setting:\n  binWidth: 25\n  resampledPixelSpacing: [1, 1, 1]\n  resegmentRange: [-1000, 400]\n"
                      "  voxelArrayShift: 1000\n  weightingNorm: manhattan\nimageType:\n  Original: {}\n"
                      "  LoG: {sigma: [1.0]}\nfeatureClass:\n  glcm: []\n")
    assert main(["gate", "ibsi", "--params", str(params), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "binWidth with resegmentRange" in out and "bins are counted from a multiple of binWidth" in out
    table = params_deviations({"setting": {"binWidth": 25, "resampledPixelSpacing": [1, 1, 1],
                                           "resegmentRange": [-1000, 400], "voxelArrayShift": 1000,
                                           "weightingNorm": "manhattan"},
                               "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}}, "featureClass": {"glcm": []}})
    removed = dict(zip(table.setting + ":" + table.deviation.str[:20], table.removed_by_ibsi_mode))
    assert sum(k.startswith("resampledPixelSpacing") for k in removed) == 3
    assert {k.split(":")[0]: v for k, v in removed.items()} == {
        "resampledPixelSpacing": True, "binWidth with resegmentRange": True, "voxelArrayShift": True,
        "weightingNorm": False, "featureClass.glcm": True, "imageType.LoG": False}
    assert (tmp_path / "ibsi_params.md").exists()
    assert main(["gate", "ibsi", "--params", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == 2
