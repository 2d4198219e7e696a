"""The pyradiomics adapter: parameter validation, feature keys and tidy rows (the extract command: tests/cli)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.extraction.adapter import (
    _sha1,
    extract,
    feature_class,
    feature_rows,
    image_type,
    make_extractor,
)
from harmony.extraction.params import load_params, merge_params
from harmony.phantoms.digital import ibsi_digital_phantom
from tests.conftest import REAL_PARAMS

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


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
       pixel=st.sampled_from([sitk.sitkUInt8, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkFloat32, sitk.sitkFloat64]),
       components=st.sampled_from([1, 3]), seed=st.integers(0, 2**32 - 1))
def test_diagnostics_hash_is_simpleitks(shape, pixel, components, seed):
    values = np.random.default_rng(seed).integers(0, 200, (components, *shape))
    channels = [sitk.Cast(sitk.GetImageFromArray(v), pixel) for v in values]
    image = channels[0] if components == 1 else sitk.Compose(channels)
    assert _sha1(image) == sitk.Hash(image)


def test_workers_start_without_pandas():
    code = ("import sys, harmony.extraction.executors, harmony.extraction.work; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'matplotlib') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"  # each spawned worker would pay 0.3 s for pandas
