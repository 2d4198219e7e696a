"""The pyradiomics adapter: parameter validation, tidy rows, and exact agreement with ``execute``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from harmony.cli import main
from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.core.files import read_json
from harmony.extraction.adapter import (
    extract,
    feature_class,
    feature_rows,
    image_type,
    make_extractor,
)
from harmony.extraction.params import load_params, merge_params
from harmony.phantoms.digital import ibsi_digital_phantom, write_ibsi_phantom

REAL_PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}},
    "featureClass": {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")},
}
SMALL_PARAMS = {"setting": {"binWidth": 1, "minimumROIDimensions": 1}, "imageType": {"Original": {}}}


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"setting": {"binwidth": 25}}, "Key 'binwidth' was not defined. Path: '/setting'"),
        ({"setting": {"binWidth": -1}}, "Path: '/setting/binWidth'"),
        ({"imageType": {"LoGG": {}}}, "Image Type LoGG is not recognized"),
        ({"featureClass": {"glcmm": None}}, "Feature Class glcmm is not recognized"),
        ({"featureClass": {"glcm": ["Contrastt"]}}, "glcm contains unrecognized features: {'Contrastt'}"),
        ({"settings": {"binWidth": 25}}, "unknown pyradiomics parameter section 'settings'"),
    ],
)
def test_bad_parameters_are_named(params, fragment):
    with pytest.raises(ConfigError) as err:
        make_extractor(params, source="params.yaml")
    assert str(err.value).startswith("params.yaml: ")
    assert fragment in str(err.value)


def test_parameter_files_in_every_format_agree(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(REAL_PARAMS))
    (tmp_path / "p.json").write_text(json.dumps(REAL_PARAMS))
    (tmp_path / "p.toml").write_text(
        '[setting]\nbinWidth = 25\nlabel = 1\n[imageType.Original]\n[imageType.LoG]\nsigma = [1.0, 3.0]\n'
        '[imageType.Wavelet]\n')
    loaded = [load_params(tmp_path / f"p.{ext}") for ext in ("yaml", "json", "toml")]
    assert loaded[0] == loaded[1]
    assert loaded[2]["setting"] == REAL_PARAMS["setting"] and loaded[2]["imageType"] == REAL_PARAMS["imageType"]


def test_yaml_is_read_safely(tmp_path):
    (tmp_path / "evil.yaml").write_text("setting: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="evil.yaml: cannot parse parameters"):
        load_params(tmp_path / "evil.yaml")
    with pytest.raises(ConfigError, match="unknown parameter file type '.txt'"):
        (tmp_path / "p.txt").write_text("")
        load_params(tmp_path / "p.txt")


def test_merge_params_does_not_mutate():
    base = {"setting": {"binWidth": 25}}
    merged = merge_params(base, {"setting": {"label": 2}, "imageType": {"Original": {}}})
    assert base == {"setting": {"binWidth": 25}}
    assert merged == {"setting": {"binWidth": 25, "label": 2}, "imageType": {"Original": {}}}


def test_features_and_diagnostics_are_separated():
    image, mask = ibsi_digital_phantom()
    result = extract(image, mask, SMALL_PARAMS)
    assert result.features and result.diagnostics
    assert not any(k.startswith(schema.DIAGNOSTICS_PREFIX) for k in result.features)
    assert all(k.startswith(schema.DIAGNOSTICS_PREFIX) for k in result.diagnostics)
    assert all(isinstance(v, float) for v in result.features.values())
    json.dumps(result.diagnostics)  # JSON-able, for the manifest
    assert result.features["original_firstorder_Maximum"] == 6.0  # the 9 lies outside the IBSI mask
    rows = feature_rows(result.features, case_id="c", site="s")
    schema.FEATURES.validate(rows)
    assert len(rows) == len(result.features)


def test_feature_key_parts():
    assert feature_class("log-sigma-1-0-mm-3D_glcm_Idm") == "glcm"
    assert image_type("log-sigma-1-0-mm-3D_glcm_Idm") == "log-sigma-1-0-mm-3D"
    with pytest.raises(ValueError, match="not a pyradiomics feature key"):
        feature_class("diagnostics")


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
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    names = ("brain1", "breast1", "lung1")
    pd.DataFrame({
        "case_id": names, "site": ["ref"] * 3,
        "image": [str(pyradiomics_cases / f"{n}_image.nrrd") for n in names],
        "mask": [str(pyradiomics_cases / f"{n}_label.nrrd") for n in names],
    }).to_csv(tmp_path / "cases.csv", index=False)
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
