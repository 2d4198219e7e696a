"""The reference-data lookup: vendored copy first, then $HARMONY_REFERENCE_DATA; absent data skips, or fails in CI."""

from __future__ import annotations

import pytest

import tests.conftest as conftest
from tests.conftest import TESTS_DATA, reference_path


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """An empty vendored folder and a shared folder holding one file."""
    monkeypatch.setattr(conftest, "TESTS_DATA", tmp_path / "vendored")
    monkeypatch.setattr(conftest, "REFERENCE_DATA", tmp_path / "shared")
    (tmp_path / "vendored").mkdir()
    (tmp_path / "shared" / "set").mkdir(parents=True)
    (tmp_path / "shared" / "set" / "values.csv").write_text("x\n")
    return tmp_path


def test_the_vendored_copy_wins(shared):
    (shared / "vendored" / "set").mkdir()
    (shared / "vendored" / "set" / "values.csv").write_text("x\n")
    assert reference_path("set", "values.csv") == shared / "vendored" / "set" / "values.csv"


def test_the_shared_folder_serves_what_is_not_vendored(shared):
    assert reference_path("set", "values.csv") == shared / "shared" / "set" / "values.csv"


@pytest.mark.parametrize("ci", ["", "false"])
def test_absent_data_skips_off_ci_naming_both_places(shared, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception) as skipped:
        reference_path("set", "missing.csv")
    assert "'set/missing.csv' not found" in str(skipped.value) and str(shared / "shared") in str(skipped.value)


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_absent_data_fails_under_ci(shared, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"'set/missing.csv' not found .*under CI=true"):
        reference_path("set", "missing.csv")


def test_the_small_references_are_vendored_and_the_ct_phantom_is_not():
    for parts in (("combat_reference", "testdata.csv"), ("ibsi1_digital_phantom", "reference_values.csv"),
                  ("icc_reference", "shrout_fleiss_1979_table2.csv"), ("pyradiomics_cases", "lung1_label.nrrd"),
                  # with their licences and origin
                  ("README.md",), ("combat_reference", "LICENSE.txt"), ("ibsi1_digital_phantom", "LICENSE.md"),
                  ("pyradiomics_cases", "LICENSE.txt")):
        assert TESTS_DATA.joinpath(*parts).is_file(), parts
    assert not (TESTS_DATA / "ibsi1_ct_phantom").exists()  # CC BY-NC: never vendored
