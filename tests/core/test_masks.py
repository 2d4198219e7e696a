"""Masks are label maps: an image given as the mask is refused before anything runs, naming the file; a per-case
``label`` column overrides the study's label."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.cli import main
from harmony.core.cases import MAX_LABELS, check_label_map, load_cases
from harmony.core.errors import CaseError
from tests.conftest import reference_path, sitk_image


def _write(folder, name, array, dtype):
    path = folder / name
    sitk.WriteImage(sitk_image(array.astype(dtype)), str(path))
    return path


def test_the_real_ct_given_as_the_mask_is_refused_in_seconds(tmp_path, capsys):
    cases = reference_path("pyradiomics_cases")
    csv = tmp_path / "cases.csv"
    pd.DataFrame([{"case_id": "lung1", "image": str(cases / "lung1_label.nrrd"),
                   "mask": str(cases / "lung1_image.nrrd"), "site": "a"}]).to_csv(csv, index=False)
    params = tmp_path / "params.yaml"
    params.write_text("imageType: {Original: {}}\nfeatureClass: {firstorder: []}\n")
    started = time.monotonic()
    code = main(["extract", str(csv), "--params", str(params), "--out", str(tmp_path / "out"), "--executor", "serial"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 10
    assert "lung1_image.nrrd holds negative values" in err and "did you swap image and mask?" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out" / "extraction").exists()


@pytest.mark.parametrize("array, dtype, message", [
    (np.linspace(0, 1, 60).reshape(3, 4, 5), np.float32, "holds non-integer values"),
    (np.arange(60).reshape(3, 4, 5) - 10, np.int16, "holds negative values (minimum -10)"),
    (np.arange(600).reshape(6, 10, 10), np.uint16, f"holds 599 distinct values, more than {MAX_LABELS}"),
])
def test_images_that_are_not_label_maps(tmp_path, array, dtype, message):
    image = _write(tmp_path, "image.nrrd", np.ones(array.shape), np.float32)
    mask = _write(tmp_path, "mask.nrrd", array, dtype)
    pd.DataFrame([{"case_id": "c", "image": str(image), "mask": str(mask), "site": "a"}]).to_csv(
        tmp_path / "cases.csv", index=False)
    with pytest.raises(CaseError, match=r"case 'c': mask .*mask.nrrd " + message.replace("(", r"\(").replace(
            ")", r"\)")):
        load_cases(tmp_path / "cases.csv")


def test_a_float_mask_of_whole_numbers_is_a_label_map(tmp_path):
    array = np.zeros((3, 4, 5))
    array[1, 1:3, 1:4] = 1.0
    check_label_map(array.astype(np.float64), case_id="c", mask_path="m.nii.gz", label=1)


def test_per_case_label_column_overrides_the_study_label(tmp_path):
    array = np.zeros((3, 4, 5))
    array[1, 1:3, 1:4] = 2
    image = _write(tmp_path, "image.nrrd", np.ones(array.shape), np.float32)
    two = _write(tmp_path, "two.nrrd", array, np.uint8)
    one = _write(tmp_path, "one.nrrd", array / 2, np.uint8)
    rows = [{"case_id": "a", "image": str(image), "mask": str(two), "site": "s", "label": 2},
            {"case_id": "b", "image": str(image), "mask": str(one), "site": "s", "label": None}]
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    cases = load_cases(tmp_path / "cases.csv")
    assert list(cases["case_id"]) == ["a", "b"]
    rows[0]["label"] = 3
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    with pytest.raises(CaseError, match=r"case 'a': mask .*two.nrrd has no voxel with label 3 \(labels present: \[2\]\)"
                                        r"; set the label with --label"):
        load_cases(tmp_path / "cases.csv")
    rows[0]["label"] = "first"
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    with pytest.raises(CaseError, match=r"case 'a': column 'label' must be an integer >= 1, got 'first'"):
        load_cases(tmp_path / "cases.csv")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, MAX_LABELS), min_size=1, max_size=50), st.sampled_from([np.uint8, np.int32,
                                                                                       np.float32]))
def test_every_non_negative_integer_map_with_its_label_passes(values, dtype):
    voxels = np.array(values + [1]).astype(np.int64).clip(0, 255).astype(dtype)
    check_label_map(voxels, case_id="c", mask_path="m", label=1)
