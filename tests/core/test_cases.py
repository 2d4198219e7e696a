"""The cases CSV: every failure is a CaseError naming the case and the file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import load_case_images, load_cases, write_cases
from harmony.core.errors import CaseError
from tests.conftest import sitk_image


def _image(shape=(6, 7, 8), spacing=(1.0, 1.0, 2.0), value=None, dtype=np.float32):
    arr = np.arange(np.prod(shape), dtype=dtype).reshape(shape) if value is None else np.full(shape, value, dtype)
    return sitk_image(arr, spacing)


def _mask(shape=(6, 7, 8), spacing=(1.0, 1.0, 2.0), label=1):
    arr = np.zeros(shape, np.uint8)
    arr[2:4, 2:5, 2:6] = label
    return sitk_image(arr, spacing)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    sitk.WriteImage(_image(), str(tmp_path / "img" / "a.nrrd"))
    sitk.WriteImage(_mask(), str(tmp_path / "img" / "a_mask.nrrd"))
    sitk.WriteImage(_image(), str(tmp_path / "img" / "b.nrrd"))
    sitk.WriteImage(_mask(), str(tmp_path / "img" / "b_mask.nrrd"))
    return tmp_path


def write_csv(folder, rows, name="cases.csv"):
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


GOOD = [
    {"case_id": "a", "image": "img/a.nrrd", "mask": "img/a_mask.nrrd", "site": "s1", "age": 61, "group": "x"},
    {"case_id": "b", "image": "img/b.nrrd", "mask": "img/b_mask.nrrd", "site": "s2", "age": 55, "group": "y"},
]


def test_good_manifest_resolves_paths_and_keeps_covariates(folder):
    cases = load_cases(write_csv(folder, GOOD))
    assert list(cases[schema.CASE_ID]) == ["a", "b"]
    assert cases[schema.IMAGE][0] == str((folder / "img" / "a.nrrd").resolve())
    assert schema.covariate_columns(cases) == ["age", "group"]
    assert cases["age"].tolist() == [61, 55]
    image, mask = load_case_images(cases.iloc[0])
    assert image.GetSize() == (8, 7, 6) and mask.GetSpacing() == (1.0, 1.0, 2.0)


def test_write_cases_round_trips_with_relative_paths(folder):
    cases = load_cases(write_csv(folder, GOOD))
    out = folder / "copy" / "cases.csv"
    write_cases(cases, out)
    assert "../img/a.nrrd" in out.read_text()
    pd.testing.assert_frame_equal(load_cases(out), cases)


def _expect(folder, rows, *fragments):
    path = write_csv(folder, rows)
    with pytest.raises(CaseError) as err:
        load_cases(path)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_missing_file(folder):
    rows = [dict(GOOD[0], image="img/nope.nrrd")]
    _expect(folder, rows, "case 'a'", "image file not found", "nope.nrrd")


def test_unreadable_image(folder):
    (folder / "img" / "broken.nrrd").write_text("this is not an image")
    _expect(folder, [dict(GOOD[0], image="img/broken.nrrd")], "case 'a'", "image file is unreadable", "broken.nrrd")


@pytest.mark.parametrize(
    "mask, fragment",
    [
        (_mask(shape=(6, 7, 9)), "has size (9, 7, 6), the image has (8, 7, 6)"),
        (_mask(spacing=(1.0, 1.0, 2.5)), "has spacing"),
    ],
)
def test_geometry_mismatch(folder, mask, fragment):
    sitk.WriteImage(mask, str(folder / "img" / "odd_mask.nrrd"))
    _expect(folder, [dict(GOOD[0], mask="img/odd_mask.nrrd")], "case 'a'", "odd_mask.nrrd", fragment)


def test_origin_and_direction_mismatch_beyond_tolerance(folder):
    moved = _mask()
    moved.SetOrigin((0.0, 0.0, 0.01))
    sitk.WriteImage(moved, str(folder / "img" / "moved_mask.nrrd"))
    _expect(folder, [dict(GOOD[0], mask="img/moved_mask.nrrd")], "has origin", "tolerance 0.0001")
    # within a looser tolerance it is accepted
    assert len(load_cases(folder / "cases.csv", tolerance=0.1)) == 1
    turned = _mask()
    turned.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(turned, str(folder / "img" / "turned_mask.nrrd"))
    _expect(folder, [dict(GOOD[0], mask="img/turned_mask.nrrd")], "has direction")


def test_empty_mask(folder):
    sitk.WriteImage(_image(value=0, dtype=np.uint8), str(folder / "img" / "empty_mask.nrrd"))
    _expect(folder, [dict(GOOD[0], mask="img/empty_mask.nrrd")], "case 'a'", "is empty")


def test_mask_without_requested_label(folder):
    sitk.WriteImage(_mask(label=2), str(folder / "img" / "two_mask.nrrd"))
    _expect(folder, [dict(GOOD[0], mask="img/two_mask.nrrd")], "no voxel with label 1", "labels present: [2]")
    assert len(load_cases(folder / "cases.csv", label=2)) == 1


def test_duplicate_case_id(folder):
    _expect(folder, [GOOD[0], dict(GOOD[1], case_id="a")], "duplicate case_id 'a'")


def test_missing_column_and_empty_cell(folder):
    _expect(folder, [{k: v for k, v in GOOD[0].items() if k != "site"}], "missing column(s) ['site']")
    _expect(folder, [dict(GOOD[0], site="")], "case 'a'", "column 'site' is empty")


def test_missing_csv(tmp_path):
    with pytest.raises(CaseError, match="cases file not found"):
        load_cases(tmp_path / "none.csv")


def test_missing_covariate_values_stay_missing_and_ids_stay_text(folder):
    rows = [dict(GOOD[0], case_id="NA", age=None), dict(GOOD[1], group=None)]
    cases = load_cases(write_csv(folder, rows))
    assert cases[schema.CASE_ID].tolist() == ["NA", "b"]  # an id, not a missing value
    assert cases["age"].dtype == "float64" and np.isnan(cases["age"][0]) and cases["age"][1] == 55
    assert cases["group"].isna().tolist() == [False, True]
