"""`harmony extract`: the cases CSV through the engine, isolated failures, resume after a kill, and equality
with pyradiomics' own ``execute`` on its real sample cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from radiomics.featureextractor import RadiomicsFeatureExtractor

from harmony.cli import main
from harmony.core import schema
from harmony.core.files import read_json, write_table
from harmony.core.lock import LOCK_NAME
from harmony.extraction.taskfiles import FEATURES_NAME, TASKS_DIR
from harmony.perturb.design import expand_design
from harmony.perturb.variants import variants_table
from harmony.phantoms.digital import ibsi_digital_phantom, write_ibsi_phantom
from tests.conftest import (
    ENGINE_PARAMS,
    PYRADIOMICS_CASES,
    REAL_PARAMS,
    ROOT,
    pyradiomics_cases_csv,
    sorted_features,
)


@pytest.mark.slow
def test_extract_command_end_to_end_with_an_isolated_failure(tmp_path, capsys):
    cases = write_ibsi_phantom(tmp_path / "data")
    # a second case whose ROI pyradiomics rejects (one voxel, minimumROIDimensions 2): it fails alone
    image, _ = ibsi_digital_phantom()
    one = np.zeros((4, 4, 5), np.uint8)
    one[0, 0, 0] = 1
    tiny = sitk.GetImageFromArray(one)
    tiny.CopyInformation(image)
    sitk.WriteImage(tiny, str(tmp_path / "data" / "tiny_mask.nrrd"))
    rows = pd.read_csv(tmp_path / "data" / "cases.csv")
    rows = pd.concat([rows, rows.assign(case_id="tiny", mask="tiny_mask.nrrd")])
    rows.to_csv(tmp_path / "data" / "cases.csv", index=False)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"setting": {"binWidth": 1}, "imageType": {"Original": {}}}))
    out = tmp_path / "out"
    code = main(["extract", str(tmp_path / "data" / "cases.csv"), "--params", str(tmp_path / "p.yaml"),
                 "--out", str(out), "--quiet"])
    assert code == 1
    assert "1 task(s) failed" in capsys.readouterr().err
    features = pd.read_parquet(out / "features.parquet")
    failures = pd.read_parquet(out / "failures.parquet")
    assert set(features[schema.CASE_ID]) == {cases[schema.CASE_ID][0]}
    assert failures[schema.CASE_ID].tolist() == ["tiny"] and "ValueError" in failures[schema.ERROR][0]
    manifest = read_json(out / "manifest.json")
    assert manifest["versions"]["pyradiomics_distribution"] == "pyradiomics-bhklab"
    assert manifest["versions"]["pyradiomics"] and manifest["versions"]["SimpleITK"]
    assert manifest["config"]["params"]["setting"]["binWidth"] == 1
    assert len(manifest["settings_hash"]) == 64
    assert manifest["tasks"] == {"total": 2, "done": 1, "failed": 1, "resumed": 0}
    # pyradiomics' diagnostics of the successful case: the IBSI phantom's ROI has 74 voxels
    diagnostics = manifest["diagnostics"][cases[schema.CASE_ID][0]]
    assert diagnostics["diagnostics_Mask-original_VoxelNum"] == 74 and "tiny" not in manifest["diagnostics"]


def test_extract_command_rejects_bad_settings_before_reading_images(tmp_path, capsys):
    write_ibsi_phantom(tmp_path)
    (tmp_path / "p.yaml").write_text("setting:\n  binWidth: 1\n")
    code = main(["extract", str(tmp_path / "cases.csv"), "--params", str(tmp_path / "p.yaml"),
                 "--out", str(tmp_path / "out"), "--set", "setting.binwidht=2"])
    assert code == 2
    assert "binwidht" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_extract_command_equals_pyradiomics_execute_on_real_cases(pyradiomics_cases, tmp_path):
    names = PYRADIOMICS_CASES
    pyradiomics_cases_csv(tmp_path / "cases.csv", pyradiomics_cases, dict.fromkeys(names, "ref"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(REAL_PARAMS))
    assert main(["extract", str(tmp_path / "cases.csv"), "--params", str(tmp_path / "params.yaml"),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    ours = pd.read_parquet(tmp_path / "out" / "features.parquet")

    reference = RadiomicsFeatureExtractor(REAL_PARAMS)
    for name in names:
        expected = {k: float(v) for k, v in reference.execute(str(pyradiomics_cases / f"{name}_image.nrrd"),
                                                              str(pyradiomics_cases / f"{name}_label.nrrd")).items()
                    if not k.startswith("diagnostics_")}
        got = ours[ours[schema.CASE_ID] == name].set_index(schema.FEATURE)[schema.VALUE]
        assert set(got.index) == set(expected), name
        exp = pd.Series(expected)[got.index]
        np.testing.assert_allclose(got.to_numpy(), exp.to_numpy(), rtol=1e-12, atol=0, err_msg=name)
        assert len(got) > 1000  # 3 image types x 8 wavelet bands: every class present


# -- the engine's variants from the command line --------------------------------------------------------

def test_cli_extract_runs_variants_through_the_engine(engine_cohort, engine_variants, tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(ENGINE_PARAMS))
    chosen = variants_table(engine_variants[:3] + expand_design({"grid": [{"erode_dilate": {"distance_mm": -9.0}}]},
                                                         seed=0)[1:])
    write_table(chosen, tmp_path / "variants.parquet", schema.VARIANTS)
    csv = Path(engine_cohort[schema.IMAGE][0]).parent / "cases.csv"
    argv = ["extract", str(csv), "--params", str(params), "--out", str(tmp_path / "run"), "--executor", "serial",
            "--variants", str(tmp_path / "variants.parquet"), "--quiet"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "6 of 8 tasks extracted (0 from an earlier run)" in captured.out
    assert "2 task(s) failed" in captured.err
    assert main(argv) == 1
    assert "(8 from an earlier run)" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_killed_mid_run_resumes_with_every_task_exactly_once(engine_cohort, engine_variants, engine_serial_run,
                                                                tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps(ENGINE_PARAMS))
    write_table(variants_table(engine_variants), tmp_path / "variants.parquet", schema.VARIANTS)
    csv = Path(engine_cohort[schema.IMAGE][0]).parent / "cases.csv"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harmony.cli", "extract", str(csv), "--params", str(params), "--out", str(out),
           "--variants", str(tmp_path / "variants.parquet"), "--executor", "serial", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((out / TASKS_DIR).glob("*/*.parquet")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no task finished in time"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the session we started: the CLI and anything it spawned
    proc.wait()
    finished = len(list((out / TASKS_DIR).glob("*/*.parquet")))
    assert 0 < finished < engine_serial_run.total, "the run was not killed mid-way"
    assert (out / LOCK_NAME).exists()  # left behind by the killed run

    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({finished} from an earlier run)" in resumed.stdout
    assert len(list((out / TASKS_DIR).glob("*/*.parquet"))) == engine_serial_run.total
    features = schema.FEATURES.validate(pd.read_parquet(out / FEATURES_NAME))  # the key is unique
    pd.testing.assert_frame_equal(sorted_features(features), sorted_features(engine_serial_run.features),
                                  check_exact=True)
