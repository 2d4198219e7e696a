"""IBSI 2: harmony's filters against the consensus response maps (phase 1) and the filtered CT phantom's
statistics (phase 2), plain pyradiomics recorded beside them; ``harmony gate ibsi --filters``."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.gate import ibsi2
from tests.conftest import reference_path

#: What plain pyradiomics 3.1 passes: recorded, so that a change in pyradiomics is noticed.
PLAIN_PHASE1_PASSES = {"5_a_1", "6_a_1"}
#: Plain pyradiomics' passing statistics per phase-2 configuration (of 15): no configuration passes them all.
PLAIN_PHASE2_PASSED = {"1.A": 14, "1.B": 12, "3.A": 0, "3.B": 1, "6.A": 1, "6.B": 3, "7.A": 0, "7.B": 0}


def _phase1_files(test: ibsi2.FilterTest) -> list[tuple[str, ...]]:
    return [("phantoms", test.phantom, "image", f"{test.phantom}.nii.gz"),
            ("response_maps", f"{test.test}-ValidCRM.nii.gz")]


@pytest.fixture(scope="session")
def ibsi2_folder(tmp_path_factory) -> Path:
    """The IBSI 2 phase-1 files in one folder: the vendored ones (tests/data/ibsi2) and, for the response maps
    too large to vendor, the shared reference data."""
    folder = tmp_path_factory.mktemp("ibsi2")
    for test in ibsi2.PHASE1_TESTS.values():
        for parts in _phase1_files(test):
            target = folder.joinpath(*parts)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(reference_path("ibsi2", *parts))
    return folder


@pytest.fixture(scope="session")
def phase1(ibsi2_folder) -> pd.DataFrame:
    return ibsi2.phase1_compliance(ibsi2_folder)


def _side(table: pd.DataFrame, implementation: str) -> pd.DataFrame:
    return ibsi2.filter_summary(table).query("implementation == @implementation").set_index("test")


def test_harmony_passes_the_9_phase1_tests(phase1):
    harmony = _side(phase1, "harmony")
    assert list(harmony.index) == list(ibsi2.PHASE1_TESTS) and harmony["pass"].all()
    assert (harmony["worst_deviation"] < 0.1).all()  # in % of the reference range; the criterion is 1%


def test_plain_pyradiomics_passes_2_of_the_9_and_each_failure_has_its_cause(phase1):
    plain = _side(phase1, "pyradiomics")
    assert set(plain.index[plain["pass"]]) == PLAIN_PHASE1_PASSES
    failed = plain[~plain["pass"]]
    assert (failed[schema.REASON] != "").all()
    assert "a trous" in failed.at["7_a_1", schema.REASON] and "rotation" in failed.at["5_a_2", schema.REASON]
    assert "no 2D LoG" in failed.at["2_c", schema.REASON] and pd.isna(failed.at["2_c", "worst_deviation"])


@pytest.mark.slow
def test_phase2_harmony_passes_8_of_8_configurations_and_plain_pyradiomics_none():
    """One test, so that the ~1 minute of extractions runs once under pytest-xdist too."""
    phase2 = ibsi2.phase2_compliance(reference_path("ibsi1_ct_phantom"))
    harmony = _side(phase2, "harmony")
    assert list(harmony.index) == list(ibsi2.PHASE2_CONFIGS)
    assert harmony["pass"].all() and (harmony["total"] == 15).all()
    assert set(phase2[ibsi2.ITEM]) == set(ibsi2.STATISTICS.values())
    plain = _side(phase2, "pyradiomics")
    assert plain["passed"].to_dict() == PLAIN_PHASE2_PASSED
    rows = phase2[(phase2[ibsi2.IMPLEMENTATION] == "pyradiomics") & ~phase2[ibsi2.PASS]]
    assert (rows[schema.REASON] != "").all()
    kurtosis = rows[(rows[ibsi2.TEST] == "1.A")]
    assert kurtosis[ibsi2.ITEM].tolist() == ["stat_kurt"] and "excess" in kurtosis[schema.REASON].item()


def _parameters(text: str) -> dict[str, str]:
    return dict(re.match(r"\s*(sigma|sub-band|level)\s+(\S+)", part).groups()
                for part in text.split(";") if re.match(r"\s*(sigma|sub-band|level)\s", part))


def test_the_gate_runs_the_tests_listed_in_tests_csv():
    listed = pd.read_csv(reference_path("ibsi2", "tests.csv"))
    assert set(listed["test"]) == set(ibsi2.PHASE1_TESTS) | set(ibsi2.PHASE2_CONFIGS)
    for row in listed.to_dict("records"):
        test = (ibsi2.PHASE1_TESTS if row["phase"] == 1 else ibsi2.PHASE2_CONFIGS)[row["test"]]
        if row["phase"] == 1:
            assert row["phantom_or_image"] == test.phantom
        dims = 2 if row["dimensions"].startswith("2D") else 3
        if test.image_type is None:
            assert row["filter"] == "none"
            continue
        s, p = test.settings, _parameters(row["parameters"])
        assert s["dimensions"] == dims and s["boundary"] == row["boundary"]
        if test.image_type == "LoG_IBSI":
            assert row["filter"] == "Laplacian of Gaussian" and s["sigma"] == [float(p["sigma"])]
        else:
            assert row["filter"] == f"separable wavelet {s['wavelet']}" and s["bands"] == [p["sub-band"]]
            assert s["level"] == int(p["level"]) and s["rotationInvariant"] == row["rotation_invariance"].startswith(
                "yes")
        assert (test.pyradiomics is None) == row["pyradiomics_filter"].startswith("none")


def test_gate_ibsi_filters_writes_markdown_csv_and_junit(phase1, ibsi2_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(ibsi2, "phase1_compliance", lambda folder: phase1)  # computed once for the session
    assert main(["gate", "ibsi", "--filters", "--ibsi2-data", str(ibsi2_folder), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "ibsi2_filters.csv")
    assert len(table) == 2 * len(ibsi2.PHASE1_TESTS) and list(table.columns) == list(ibsi2.FILTER_COLUMNS)
    markdown = (tmp_path / "ibsi2_filters.md").read_text()
    assert "| 7_a_2 | FAIL (50%) | pass (" in markdown
    suite = ET.parse(tmp_path / "ibsi2_junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("18", "0", "7")


def test_gate_ibsi_filters_exits_1_when_a_harmony_filter_misses_its_reference(ibsi2_folder, tmp_path, monkeypatch,
                                                                              capsys):
    wrong = dataclasses.replace(ibsi2.PHASE1_TESTS["2_c"], settings={**ibsi2.PHASE1_TESTS["2_c"].settings,
                                                                     "boundary": "zero"})
    monkeypatch.setattr(ibsi2, "PHASE1_TESTS", {"2_c": wrong, "5_a_1": ibsi2.PHASE1_TESTS["5_a_1"]})
    assert main(["gate", "ibsi", "--filters", "--ibsi2-data", str(ibsi2_folder), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "harmony, phase 1, test 2_c: outside the tolerance" in err


def test_gate_ibsi_filters_names_missing_reference_data(tmp_path, capsys):
    assert main(["gate", "ibsi", "--filters", "--ibsi2-data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "impulse.nii.gz: IBSI 2 reference file not found" in err and "\n" not in err
    assert main(["gate", "ibsi", "--filters"]) == 2
