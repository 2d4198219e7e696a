"""DICOM rows of a hand-written cases CSV: converted on load, cached by content, errors naming the case."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import load_cases
from harmony.core.dicom.convert import convert_case
from harmony.core.errors import CaseError


def _csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_seg_chosen_by_segment_number_and_an_rtstruct_by_name(study, tmp_path):
    root, written = study
    study3 = root / "LUNG-003" / "study"
    csv = _csv(tmp_path / "cases.csv", [
        {"case_id": "seg", "image": str(study3 / "CT"), "mask": str(study3 / "SEG" / "seg.dcm"), "site": "ge",
         "roi": 1},
        {"case_id": "rs", "image": str(study3 / "CT"), "mask": str(study3 / "RS" / "rtstruct.dcm"), "site": "ge",
         "roi": 1}])
    with pytest.raises(CaseError, match=r"case 'rs': .*no ROI matches '1'; the ROIs are \['GTV-1', 'Lung'\]"):
        load_cases(csv)
    _csv(csv, [{"case_id": "seg", "image": str(study3 / "CT"), "mask": str(study3 / "SEG" / "seg.dcm"),
                "site": "ge", "roi": "1"},
               {"case_id": "rs", "image": str(study3 / "CT"), "mask": str(study3 / "RS" / "rtstruct.dcm"),
                "site": "ge", "roi": "GTV-1"}])
    cases = load_cases(csv).set_index(schema.CASE_ID)
    assert cases.loc["seg", schema.IMAGE] == cases.loc["rs", schema.IMAGE]  # one cached series
    for case in ("seg", "rs"):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(cases.loc[case, schema.MASK])).astype(bool)
        assert np.array_equal(mask, written["LUNG-003"]["lesion"])
    assert cases.loc["seg", "dicom_roi"] == "tumour" and cases.loc["rs", "dicom_roi"] == "GTV-1"
    assert schema.covariate_columns(cases.reset_index()) == []  # roi and dicom_* are not covariates


def test_the_cache_is_keyed_by_content_not_by_path(study, tmp_path, private_cache):
    root, _ = study
    moved = tmp_path / "moved"
    shutil.copytree(root / "LUNG-001" / "study", moved)
    first = convert_case("a", str(root / "LUNG-001" / "study" / "CT"), str(root / "LUNG-001" / "study" / "RS" /
                                                                          "rtstruct.dcm"), "GTV-1")
    again = convert_case("a", str(moved / "CT"), str(moved / "RS" / "rtstruct.dcm"), "GTV-1")
    assert first[:2] == again[:2] and again[2]["dicom_image"] == str(moved / "CT")
    other_roi = convert_case("a", str(moved / "CT"), str(moved / "RS" / "rtstruct.dcm"), "Lung")
    assert other_roi[0] == first[0] and other_roi[1] != first[1]
    assert len(list(private_cache.rglob("*.nrrd"))) == 3  # one series, two masks


def test_an_rtstruct_needs_its_series_as_the_image(study, tmp_path):
    root, _ = study
    image = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkInt16), str(image))
    with pytest.raises(CaseError, match="case 'c1': mask .* is an RTSTRUCT; the image must be the DICOM series"):
        convert_case("c1", str(image), str(root / "LUNG-001" / "study" / "RS" / "rtstruct.dcm"), "GTV-1")


def test_load_case_images_reads_a_raw_dicom_row(study):
    from harmony.core.cases import load_case_images

    root, written = study
    folder = root / "LUNG-002" / "study"
    image, mask = load_case_images({"case_id": "c2", "image": str(folder / "CT"),
                                    "mask": str(folder / "RS" / "rtstruct.dcm"), "roi": "GTV-1"})
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(written["LUNG-002"]["image"]))
    assert np.array_equal(sitk.GetArrayFromImage(mask).astype(bool), written["LUNG-002"]["lesion"])
