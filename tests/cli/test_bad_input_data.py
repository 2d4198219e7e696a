"""Files handed back (models, baselines), names and tables from data, on every command that reads them: one
line naming the file, key, case or value, exit 2, nothing written; failed tasks summarised by case and reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from harmony.cli import main
from harmony.core import schema
from harmony.core.cases import write_cases
from harmony.core.images import write_case
from harmony.harmonize.simulation import simulate_site_features
from tests.conftest import ball_case, write_cases_csv


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# -- ComBat models handed back -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A features table, its cases CSV and a model fitted on them."""
    root = tmp_path_factory.mktemp("model")
    cases, features = simulate_site_features(n_cases=40, n_features=4, rng=np.random.default_rng(1))
    features.to_parquet(root / "features.parquet")
    cases.assign(image="x.nrrd", mask="x.nrrd").to_csv(root / "cases.csv", index=False)
    assert main(["harmonize", str(root / "features.parquet"), "--out", str(root / "fit")]) == 0
    return root


def _damage(model: dict, how: str) -> dict:
    estimates = model["estimates"]
    if how == "nan":
        estimates["gamma_star"][0][0] = float("nan")
    elif how == "infinity":
        estimates["grand_mean"][1] = float("inf")
    elif how == "negative pooled variance":
        estimates["var_pooled"][0] = -1.0
    elif how == "zero batch variance":
        estimates["delta_star"][1][0] = 0.0
    elif how == "wrong shape":
        estimates["gamma_hat"] = estimates["gamma_hat"][:1]
    elif how == "batch names not text":
        model["batches"] = [1, 2, 3][:len(model["batches"])]
    elif how == "newer version":
        model["format_version"] = 99
    elif how == "wrong type":
        model["n_features"] = "four"
    elif how == "ref_level out of range":
        model["ref_level"] = 7
    return model


MESSAGES = {"nan": "every estimate must be finite", "infinity": "every estimate must be finite",
            "negative pooled variance": "a variance must be > 0", "zero batch variance": "a variance must be > 0",
            "wrong shape": "estimates.gamma_hat has shape", "batch names not text": "batches must be distinct texts",
            "newer version": "format_version 99 is not supported", "wrong type": "damaged ComBat model",
            "ref_level out of range": "ref_level 7"}


@pytest.mark.parametrize("how", list(MESSAGES))
def test_a_damaged_model_is_refused_before_anything_is_written(fitted, how, tmp_path, capsys):
    model = json.loads((fitted / "fit" / "model.json").read_text())
    # json writes NaN and Infinity as the bare words a damaged or hand-edited file holds
    (tmp_path / "model.json").write_text(json.dumps(_damage(model, how)))
    out = tmp_path / "out"
    code = main(["harmonize", str(fitted / "features.parquet"), "--model", str(tmp_path / "model.json"),
                 "--out", str(out)])
    assert code == 2
    _one_line_error(capsys, str(tmp_path / "model.json"), MESSAGES[how])
    assert not (out / "harmonized.parquet").exists()


def test_a_model_that_is_a_directory_is_refused(fitted, tmp_path, capsys):
    assert main(["harmonize", str(fitted / "features.parquet"), "--model", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 2
    _one_line_error(capsys, str(tmp_path), "is a directory")


def test_sites_that_disagree_between_features_and_cases_are_refused(fitted, tmp_path, capsys):
    cases = pd.read_csv(fitted / "cases.csv")
    case = cases[schema.CASE_ID][3]
    cases.loc[3, schema.SITE] = "elsewhere"
    cases.to_csv(tmp_path / "cases.csv", index=False)
    assert main(["harmonize", str(fitted / "features.parquet"), "--cases", str(tmp_path / "cases.csv"),
                 "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, f"case {case!r}", "'elsewhere' in the cases table")
    assert not (tmp_path / "out" / "harmonized.parquet").exists()


# -- gate baselines handed back ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    (root / "gate.toml").write_text(
        '[experiment]\nname = "g"\n[extraction]\nsettings = { setting = { binWidth = 25, label = 1, '
        'minimumROIDimensions = 1 }, imageType = { Original = {} }, featureClass = { firstorder = ["Mean"] } }\n'
        '[gate]\nphantoms = ["ibsi"]\n')
    assert main(["gate", "baseline", str(root / "gate.toml"), "--out", str(root / "baseline"), "--quiet"]) == 0
    return root


BAD_MANIFESTS = {
    "label": ("one", "label must be a mask label"),
    "inputs": ([], "inputs must be an object"),
    "versions": (["1.0"], "versions must be an object"),
    "settings": ("binWidth=25", "settings must be an object"),
    "reference_set": (3, "reference_set must be an object"),
}


@pytest.mark.parametrize("key", list(BAD_MANIFESTS))
def test_a_baseline_manifest_of_wrong_types_is_refused(baseline, key, tmp_path, capsys):
    copy = tmp_path / "baseline"
    shutil.copytree(baseline / "baseline", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[key] = BAD_MANIFESTS[key][0]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["gate", "check", str(baseline / "gate.toml"), "--baseline", str(copy), "--out",
                 str(tmp_path / "report"), "--quiet"]) == 2
    _one_line_error(capsys, str(copy / "manifest.json"), BAD_MANIFESTS[key][1])
    assert not (tmp_path / "report").exists()


def test_a_baseline_manifest_that_is_not_an_object_is_refused(baseline, tmp_path, capsys):
    copy = tmp_path / "baseline"
    shutil.copytree(baseline / "baseline", copy)
    (copy / "manifest.json").write_text("[1, 2]")
    assert main(["gate", "check", str(baseline / "gate.toml"), "--baseline", str(copy), "--out",
                 str(tmp_path / "report"), "--quiet"]) == 2
    _one_line_error(capsys, "expected a JSON object, got list")


# -- names from data never leave --out ------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", ["../../escaped", "/tmp/escaped_abs", "a/../../b", "..", ""])
def test_perturb_save_images_refuses_case_ids_that_are_not_file_names(case_id, tmp_path, capsys):
    image_path, mask_path = write_case(*ball_case((8, 16, 16), radius_mm=4.0), tmp_path / "data", "c1")
    cases = pd.DataFrame({schema.CASE_ID: [case_id or "x"], schema.SITE: ["s"], schema.IMAGE: [str(image_path)],
                          schema.MASK: [str(mask_path)]})
    write_cases(cases, tmp_path / "data" / "cases.csv")
    if not case_id:  # an empty cell is its own error, of the cases CSV
        text = (tmp_path / "data" / "cases.csv").read_text().replace("\nx,", "\n,")
        (tmp_path / "data" / "cases.csv").write_text(text)
    (tmp_path / "design.toml").write_text("[[grid]]\nnoise = { level = [5.0] }\n")
    out = tmp_path / "deep" / "er" / "out"
    before = set(tmp_path.rglob("*"))
    assert main(["perturb", str(tmp_path / "data" / "cases.csv"), str(tmp_path / "design.toml"), "--out", str(out),
                 "--save-images", "--quiet"]) == 2
    _one_line_error(capsys, "case_id")
    made = set(tmp_path.rglob("*")) - before
    assert all(out in p.parents or p == out or p in out.parents for p in made), made
    assert not Path("/tmp/escaped_abs").exists() and not list(out.rglob("*.nrrd"))


def test_phantoms_refuse_a_prefix_that_is_not_a_file_name(tmp_path, capsys):
    out = tmp_path / "a" / "out"
    assert main(["phantoms", "cohort_demo", "--out", str(out), "--set", "cohort.prefix=../../x_", "--quiet"]) == 2
    _one_line_error(capsys, "cohort.prefix", "'../../x_000'", "'/'")
    assert not list(tmp_path.rglob("*.nrrd")) and not list(tmp_path.rglob("x_*"))


def test_write_case_refuses_a_case_id_that_is_a_path(tmp_path):
    from harmony.core.files import PathError

    with pytest.raises(PathError, match="case_id '../x'"):
        write_case(*ball_case((4, 8, 8), radius_mm=2.0), tmp_path / "in", "../x")
    assert not list(tmp_path.rglob("*.nrrd"))


# -- cases files and per-case failures -------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["extract", "perturb"])
def test_an_empty_cases_csv_is_an_error(command, tmp_path, capsys):
    (tmp_path / "cases.csv").write_text("case_id,image,mask,site\n")
    (tmp_path / "design.toml").write_text("[[grid]]\nnoise = { level = [5.0] }\n")
    argv = {"extract": ["extract", str(tmp_path / "cases.csv"), "--params", "ibsi"],
            "perturb": ["perturb", str(tmp_path / "cases.csv"), str(tmp_path / "design.toml")]}[command]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    _one_line_error(capsys, str(tmp_path / "cases.csv"), "no cases")


def _with_nan(seed: int) -> tuple[sitk.Image, sitk.Image]:
    image, mask = ball_case((8, 16, 16), radius_mm=4.0, seed=seed)
    voxels = sitk.GetArrayFromImage(image)
    voxels[4, 8, 8] = np.nan  # the ball's centre: inside the mask
    nan_image = sitk.GetImageFromArray(voxels)
    nan_image.CopyInformation(image)
    return nan_image, mask


RUN_CONFIG = """
[experiment]
name = "nan"
[cases]
csv = "cases.csv"
[extraction.settings]
setting = { binWidth = 25, label = 1 }
featureClass = { firstorder = ["Mean"] }
[engine]
executor = "serial"
[harmonization]
enabled = false
[report]
enabled = false
"""


@pytest.mark.parametrize("command", ["extract", "run"])
def test_failed_tasks_are_summarised_by_case_variant_and_reason(command, tmp_path, capsys):
    cases = {"good": ball_case((8, 16, 16), radius_mm=4.0), "nan1": _with_nan(1), "nan2": _with_nan(2)}
    write_cases_csv(tmp_path, cases)
    (tmp_path / "params.yaml").write_text("setting:\n  binWidth: 25\nfeatureClass:\n  firstorder: [Mean]\n")
    (tmp_path / "run.toml").write_text(RUN_CONFIG)
    argv = {"extract": ["extract", str(tmp_path / "cases.csv"), "--params", str(tmp_path / "params.yaml"),
                        "--executor", "serial"],
            "run": ["run", str(tmp_path / "run.toml")]}[command]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "2 task(s) failed, per reason:" in err
    assert "2 x CaseError: image has NaN or infinite voxels inside the mask" in err
    assert "case 'nan1', variant 'original': CaseError: case 'nan1': image has NaN or infinite voxels" in err
    assert "1 of " in err and "Traceback" not in err
    features = pd.read_parquet(next((tmp_path / "out").rglob("features.parquet")))
    assert set(features[schema.CASE_ID]) == {"good"}
