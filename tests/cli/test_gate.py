"""`harmony gate baseline / check / ibsi`: the extractor-change gate on two tiny phantoms, and the IBSI table."""

from __future__ import annotations

import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.core.files import read_json, write_json
from harmony.extraction.adapter import extract, feature_class
from harmony.gate import ibsi
from harmony.gate.baseline import PHANTOM_DIR, load_baseline
from harmony.gate.compare import (
    ABS_TOL,
    CHANGED,
    FEATURE_CLASS,
    MAX_ABS,
    MAX_REL,
    N_CHANGED,
    N_VALUES,
    OK,
    PASSED,
    REL_TOL,
    REMOVED,
    STATUS,
)
from harmony.gate.settings import PROCEDURAL_PHANTOMS
from harmony.phantoms.digital import ibsi_digital_phantom
from harmony.phantoms.render import render_phantom

TEXTURE_CLASSES = {"glcm", "glrlm", "glszm", "gldm", "ngtdm"}
# two tiny phantoms: the IBSI one (grey levels 1-9: one bin at width 24 or 25) and a textured sphere
CONFIG = """
[experiment]
name = "gate-test"
[extraction]
settings = { setting = { binWidth = 25, label = 1, minimumROIDimensions = 1 }, imageType = { Original = {} } }
[gate]
phantoms = ["ibsi", "sphere"]
"""


@pytest.fixture(scope="module")
def gate_dir(tmp_path_factory) -> Path:
    """A config and its bin-width-25 baseline, shared by the module's tests (never modified by them)."""
    root = tmp_path_factory.mktemp("gate")
    (root / "gate.toml").write_text(CONFIG)
    assert main(["gate", "baseline", str(root / "gate.toml"), "--out", str(root / "baseline"), "--quiet"]) == 0
    return root


def check(root: Path, *overrides: str, baseline: Path | None = None, out: str = "report") -> tuple[int, Path]:
    args = ["gate", "check", str(root / "gate.toml"), "--baseline", str(baseline or root / "baseline"),
            "--out", str(root / out), "--quiet"]
    for text in overrides:
        args += ["--set", text]
    return main(args), root / out


def comparison(report: Path) -> pd.DataFrame:
    return pd.read_csv(report / "comparison.csv")


def junit(report: Path) -> ET.Element:
    return ET.parse(report / "junit.xml").getroot()


# -- baseline and check --------------------------------------------------------------------------------

def test_baseline_stores_features_settings_versions_and_reference_set(gate_dir):
    base = load_baseline(gate_dir / "baseline")
    assert set(base.cases[schema.CASE_ID]) == {"ibsi", "sphere"}
    assert base.variants[schema.VARIANT_ID].tolist() == [schema.ORIGINAL]
    assert base.features[schema.CASE_ID].nunique() == 2 and base.failures.empty
    assert not base.features[schema.FEATURE].str.startswith(schema.DIAGNOSTICS_PREFIX).any()
    assert base.manifest["settings"]["setting"]["binWidth"] == 25
    assert base.manifest["versions"]["pyradiomics_distribution"] == "pyradiomics-bhklab"
    assert base.manifest["reference_set"]["phantoms"] == ["ibsi", "sphere"]
    # the stored values are pyradiomics' own for the stored images
    image, mask = ibsi_digital_phantom()
    direct = extract(image, mask, base.manifest["settings"]).features
    stored = base.features[base.features[schema.CASE_ID] == "ibsi"].set_index(schema.FEATURE)[schema.VALUE]
    assert stored.to_dict() == pytest.approx(direct, rel=0, abs=0, nan_ok=True)


def test_identical_settings_pass(gate_dir, capsys):
    code, report = check(gate_dir, out="same")
    assert code == 0
    table = comparison(report)
    assert (table[STATUS] == OK).all() and (table[MAX_ABS] == 0).all()
    assert int(junit(report).get("failures")) == 0
    out = capsys.readouterr().out
    assert "PASSED: 0 of" in out and "notice" not in out


def test_bin_width_change_fails_naming_the_changed_texture_features(gate_dir, capsys):
    code, report = check(gate_dir, "extraction.settings.setting.binWidth=24", out="bw24")
    assert code == 1
    table = comparison(report).set_index(schema.FEATURE)
    failed = set(table.index[~table[PASSED]])
    # the expected set, independently: which features pyradiomics itself changes on the sphere phantom
    image, mask = render_phantom(*PROCEDURAL_PHANTOMS["sphere"])
    settings25 = {"setting": {"binWidth": 25, "label": 1, "minimumROIDimensions": 1}, "imageType": {"Original": {}}}
    settings24 = {**settings25, "setting": {**settings25["setting"], "binWidth": 24}}
    a, b = extract(image, mask, settings25).features, extract(image, mask, settings24).features
    expected = {k for k in a if not math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-9)}
    assert failed == expected
    assert {feature_class(f) for f in failed} == TEXTURE_CLASSES | {"firstorder"}
    assert failed >= {"original_glcm_Contrast", "original_glszm_ZonePercentage", "original_ngtdm_Busyness"}
    assert {f for f in failed if feature_class(f) == "firstorder"} == {"original_firstorder_Entropy",
                                                                        "original_firstorder_Uniformity"}
    shape = table[table[FEATURE_CLASS] == "shape"]
    assert len(shape) == 14 and shape[PASSED].all() and (shape[MAX_ABS] == 0).all()
    assert set(table.loc[list(failed), STATUS]) == {CHANGED}
    # the sphere changes, the IBSI phantom (one bin either way) does not: 1 of 2 values changed
    assert (table.loc[list(failed), N_CHANGED] == 1).all()
    contrast = table.loc["original_glcm_Contrast"]
    assert contrast[MAX_ABS] == pytest.approx(abs(a["original_glcm_Contrast"] - b["original_glcm_Contrast"]))
    # the readable diff names every changed feature: stderr table, Markdown and JUnit XML
    err = capsys.readouterr().err
    markdown = (report / "gate.md").read_text()
    for name in failed:
        assert name in err and f"`{name}`" in markdown
    assert "setting setting.binWidth: 25 -> 24" in err
    root = junit(report)
    assert int(root.get("failures")) == len(failed) == len(root.findall("testcase/failure"))
    assert int(root.get("tests")) == len(table) + 1
    cases = {c.get("name"): c for c in root.iter("testcase")}
    message = cases["original_glcm_Contrast"].find("failure").get("message")
    assert message.startswith("1 of 2 values changed: max abs diff") and "tolerance rel 1e-06" in message
    assert cases["original_shape_Sphericity"].find("failure") is None


def test_widening_the_tolerance_passes(gate_dir):
    _, report = check(gate_dir, "extraction.settings.setting.binWidth=24", out="measure")
    worst = comparison(report)[MAX_REL].max()
    assert 0 < worst < np.inf
    code, _ = check(gate_dir, "extraction.settings.setting.binWidth=24", f"gate.tolerance.rel={worst * 1.001}",
                    out="wide")
    assert code == 0
    code, report = check(gate_dir, "extraction.settings.setting.binWidth=24", f"gate.tolerance.rel={worst * 0.999}",
                         out="narrow")
    assert code == 1 and (~comparison(report)[PASSED]).sum() == 1


def test_class_and_feature_tolerances_most_specific_wins(gate_dir):
    code, report = check(gate_dir, "extraction.settings.setting.binWidth=24",
                         "gate.tolerance.class.glcm.abs=1e6",
                         "gate.tolerance.feature.original_glcm_Contrast.abs=1e-9",
                         "gate.tolerance.feature.original_glrlm_RunEntropy.rel=1", out="precedence")
    assert code == 1
    table = comparison(report).set_index(schema.FEATURE)
    glcm = table[table[FEATURE_CLASS] == "glcm"]
    assert set(glcm.index[~glcm[PASSED]]) == {"original_glcm_Contrast"}
    assert table.loc["original_glcm_Idmn", ABS_TOL] == 1e6
    assert table.loc["original_glcm_Contrast", [ABS_TOL, REL_TOL]].tolist() == [1e-9, 1e-6]
    assert table.loc["original_glrlm_RunEntropy", PASSED]  # its own entry
    assert not table.loc["original_glrlm_RunVariance", PASSED]  # the global tolerance


def test_perturbation_design_is_stored_and_replayed(tmp_path):
    (tmp_path / "gate.toml").write_text(CONFIG.replace('["ibsi", "sphere"]', '["sphere"]') + """
[[perturbations.grid]]
bin_width = { width = [25.0, 50.0] }
erode_dilate = { distance_mm = [0.0, -1.0] }
""")
    assert main(["gate", "baseline", str(tmp_path / "gate.toml"), "--out", str(tmp_path / "baseline"), "--quiet"]) == 0
    base = load_baseline(tmp_path / "baseline")
    assert sorted(base.variants[schema.KIND]) == ["discretisation", "discretisation+mask", "mask", "original"]
    assert base.features.groupby(schema.VARIANT_ID).size().tolist() == [107] * 4
    code, report = check(tmp_path, "extraction.settings.setting.binWidth=24", out="design-bw24")
    assert code == 1
    table = comparison(report).set_index(schema.FEATURE)
    # the two bin-width-50 variants set their own bin width: only the original and the eroded one change
    assert table.loc["original_glcm_Contrast", [N_CHANGED, N_VALUES]].tolist() == [2, 4]
    assert check(tmp_path, out="design-same")[0] == 0


def test_removed_features_are_reported_and_fail(gate_dir, capsys):
    code, report = check(gate_dir, "extraction.settings.featureClass={ shape = [], firstorder = [] }", out="removed")
    assert code == 1
    table = comparison(report)
    removed = table[table[STATUS] == REMOVED]
    assert set(removed[FEATURE_CLASS]) == TEXTURE_CLASSES
    assert table.loc[table[STATUS] != REMOVED, PASSED].all()
    assert "removed" in capsys.readouterr().err


def test_version_change_is_reported_even_when_values_agree(gate_dir, tmp_path, capsys):
    edited = tmp_path / "baseline"
    shutil.copytree(gate_dir / "baseline", edited)
    manifest = read_json(edited / "manifest.json")
    current = manifest["versions"]["pyradiomics"]
    manifest["versions"]["pyradiomics"] = "3.0.1"
    manifest["versions"]["scipy"] = "0.1"  # not watched by default
    write_json(edited / "manifest.json", manifest)
    code, report = check(gate_dir, baseline=edited, out="version-notice")
    assert code == 0
    out = capsys.readouterr().out
    assert f"version pyradiomics: 3.0.1 -> {current}" in out and "scipy" not in out
    assert comparison(report)[PASSED].all()
    assert f"version pyradiomics: 3.0.1 -> {current}" in (report / "gate.md").read_text()
    versions = [c for c in junit(report).iter("testcase") if c.get("name") == "versions"][0]
    assert versions.find("failure") is None and "3.0.1" in versions.find("system-out").text
    code, report = check(gate_dir, "gate.fail_on_version_change=true", baseline=edited, out="version-fail")
    assert code == 1 and int(junit(report).get("failures")) == 1
    assert "watched versions changed" in capsys.readouterr().err


def test_bad_input_exits_2_naming_the_problem(gate_dir, tmp_path, capsys):
    code, _ = check(gate_dir, baseline=tmp_path)
    assert code == 2 and "not a gate baseline" in capsys.readouterr().err
    code, _ = check(gate_dir, "gate.tolerance.class.glcmm.rel=1e-3")
    assert code == 2 and "unknown feature class 'glcmm'" in capsys.readouterr().err
    code, _ = check(gate_dir, "gate.tolerance.feature.original_glcm_Idm.rel=-1")
    assert code == 2 and "rel must be >= 0.0, got -1" in capsys.readouterr().err
    code, _ = check(gate_dir, "extraction.settings.setting.binWidht=24")
    assert code == 2 and "binWidht" in capsys.readouterr().err
    tampered = tmp_path / "tampered"
    shutil.copytree(gate_dir / "baseline", tampered)
    mask = next((tampered / PHANTOM_DIR).glob("sphere_mask*"))
    mask.write_bytes(mask.read_bytes() + b"\0")
    code, _ = check(gate_dir, baseline=tampered)
    assert code == 2 and "case 'sphere': mask" in capsys.readouterr().err


# -- IBSI compliance -----------------------------------------------------------------------------------

def test_ibsi_cli_writes_the_table(tmp_path, capsys):
    assert main(["gate", "ibsi", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "101 of 109 mapped features agree" in out and "original_firstorder_Kurtosis (stat_kurt)" in out
    written = pd.read_csv(tmp_path / "ibsi_compliance.csv")
    assert list(written.columns) == list(ibsi.COLUMNS) and len(written) == 109
    markdown = (tmp_path / "ibsi_compliance.md").read_text()
    assert markdown.count("\n| original_") == 109 and "101 of 109" in markdown
