"""`harmony cases scan`: a DICOM tree to a cases CSV and a problems table; then `harmony run` to a report.

The acceptance: 4 patients from 2 manufacturers with RTSTRUCTs go from the scan through `harmony run` to a
report with no manual step.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.core.cases import load_cases
from harmony.core.dicom.cache import CACHE_ENV
from harmony.workflows.layout import FILES
from tests.conftest import ROOT, reference_path
from tests.core.dicom.study import PATIENTS, lung1_crop, write_study


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_tree")
    written = write_study(root / "dicom", *lung1_crop(reference_path("pyradiomics_cases")))
    (root / "dicom" / "README.txt").write_text("exported by hand")
    lone = root / "dicom" / "LUNG-005" / "CT"  # a series without a structure set
    shutil.copytree(root / "dicom" / "LUNG-001" / "study" / "CT", lone)
    import pydicom
    from pydicom.uid import generate_uid
    uid = generate_uid()
    for path in lone.iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.PatientID = uid, "LUNG-005"
        ds.save_as(path)
    return root, written


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def test_scan_writes_one_row_per_patient_and_roi_and_names_the_files_left_out(tree, tmp_path, capsys):
    root, _ = tree
    out = tmp_path / "cases.csv"
    code = main(["cases", "scan", str(root / "dicom"), "--out", str(out), "--roi", "gtv.*|tumour",
                 "--site-tag", "Manufacturer+ManufacturerModelName", "--covariates", "PatientAge,PatientSex",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    std = capsys.readouterr()
    cases = pd.read_csv(out)
    assert list(cases.columns) == ["case_id", "patient_id", "site", "image", "mask", "roi", "PatientAge", "PatientSex"]
    assert len(cases) == 5  # 4 GTV-1 from RTSTRUCTs, LUNG-003's SEG segment 'tumour'
    assert set(cases["roi"]) == {"GTV-1", "tumour"} and "Lung" not in set(cases["roi"])
    first = cases.set_index("case_id").loc["LUNG-001_GTV-1"]
    assert first["site"] == "SIEMENS SOMATOM Definition AS" and first["PatientAge"] == 63 and first["PatientSex"] == "F"
    assert first["image"] == "../" + str((root / "dicom" / "LUNG-001" / "study" / "CT").relative_to(root.parent)) \
        or (out.parent / first["image"]).resolve() == (root / "dicom" / "LUNG-001" / "study" / "CT").resolve()
    problems = pd.read_csv(tmp_path / "cases_problems.csv")
    kinds = dict(zip(problems["file"].map(lambda p: p.split("/")[-1] if p.endswith(".txt") else p.split("/")[-2]),
                     problems["problem"]))
    assert kinds["README.txt"] == "unreadable" and kinds["LUNG-005"] == "unpaired"
    assert "2 file(s) left out" in std.err and "README.txt" in std.err
    assert "5 cases of 4 patients on 2 sites" in std.out


def test_a_roi_in_two_places_is_ambiguous_and_left_out(tree, tmp_path, capsys):
    root, _ = tree
    out = tmp_path / "cases.csv"
    assert main(["cases", "scan", str(root / "dicom"), "--out", str(out), "--roi", "GTV-1", "--quiet"]) == 0
    extra = root.parent / "twice"
    shutil.copytree(root / "dicom" / "LUNG-002", extra / "LUNG-002")
    import pydicom
    from pydicom.uid import generate_uid
    rs = extra / "LUNG-002" / "study" / "RS" / "rtstruct.dcm"
    ds = pydicom.dcmread(rs)
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(extra / "LUNG-002" / "study" / "RS" / "rtstruct_copy.dcm")
    assert main(["cases", "scan", str(extra), "--out", str(tmp_path / "twice.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no image series paired" in err
    problems = pd.read_csv(tmp_path / "twice_problems.csv")
    assert set(problems["problem"]) == {"ambiguous"} and problems["detail"].str.contains("'GTV-1' in 2 places").any()


@pytest.mark.parametrize("args, message", [
    (["no/such/dir"], "no/such/dir: DICOM folder not found"),
    (["{root}", "--site-tag", "Vendor"], "--site-tag Vendor: ['Vendor'] are not DICOM keywords"),
    (["{root}", "--roi", "GTV(("], "--roi 'GTV((': not a regular expression"),
])
def test_bad_input_is_one_line_and_exit_2(tree, tmp_path, capsys, args, message):
    args = [a.replace("{root}", str(tree[0] / "dicom")) for a in args]
    assert main(["cases", "scan", *args, "--out", str(tmp_path / "c.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_load_cases_converts_and_records_the_source_uids(tree, tmp_path):
    root, written = tree
    out = tmp_path / "cases.csv"
    assert main(["cases", "scan", str(root / "dicom"), "--out", str(out), "--roi", "GTV-1", "--quiet"]) == 0
    cases = load_cases(out).set_index(schema.CASE_ID)
    row, source = cases.loc["LUNG-002_GTV-1"], written["LUNG-002"]
    assert row["dicom_series_uid"] == source["series_uid"] and row["dicom_study_uid"] == source["study_uid"]
    assert row["dicom_mask_uid"] == source["rtstruct_uid"] and row["dicom_roi"] == "GTV-1"
    assert row[schema.IMAGE].endswith(".nrrd") and row[schema.MASK].endswith(".nrrd")
    again = load_cases(out).set_index(schema.CASE_ID)  # the second load finds the cache: same files
    assert again.loc["LUNG-002_GTV-1", schema.IMAGE] == row[schema.IMAGE]


def test_scan_then_run_makes_a_report_with_no_manual_step(tree, tmp_path, capsys):
    root, written = tree
    out = tmp_path / "cases.csv"
    assert main(["cases", "scan", str(root / "dicom"), "--out", str(out), "--roi", "GTV.*", "--quiet"]) == 0
    run_dir = tmp_path / "run"
    code = main(["run", str(ROOT / "experiments" / "stability_real.toml"), "--out", str(run_dir), "--quiet",
                 "--set", f"cases.csv={json.dumps(str(out))}", "--set", "engine.executor=serial",
                 "--set", "perturbations.grid=[{bin_width = {width = [15.0]}}]",
                 "--set", "reliability.bootstrap=100", "--set", "harmonization.enabled=true"])
    assert code == 0, capsys.readouterr().err
    assert (run_dir / "report.html").is_file()
    cases = pd.read_parquet(run_dir / FILES["cases"])
    assert len(cases) == len(PATIENTS) and cases[schema.SITE].nunique() == 2
    assert cases["dicom_series_uid"].str.len().gt(0).all()
    features = pd.read_parquet(run_dir / FILES["features"])
    assert set(features[schema.CASE_ID]) == set(cases[schema.CASE_ID])
    sources = json.loads((run_dir / "manifest.json").read_text())["stages"]["cases"]["dicom_sources"]
    assert {s["series_uid"] for s in sources} == {w["series_uid"] for w in written.values()}
    assert {s["mask_uid"] for s in sources} == {w["rtstruct_uid"] for w in written.values()}
    assert {s["roi"] for s in sources} == {"GTV-1"}
    assert main(["export", str(run_dir)]) == 0  # and the table for a model, with no manual step either
    table = pd.read_parquet(run_dir / "export" / "model_table.parquet")
    assert len(table) == len(PATIENTS) and list(table.columns[:3]) == [schema.CASE_ID, schema.PATIENT_ID, schema.SITE]


def test_scanning_again_overwrites_the_cases_csv(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "again.csv"
    assert main(["cases", "scan", str(root / "dicom"), "--out", str(out), "--quiet"]) == 0
    first = out.read_text()
    assert main(["cases", "scan", str(root / "dicom"), "--out", str(out), "--quiet"]) == 0
    assert out.read_text() == first
