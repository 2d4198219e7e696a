"""RTSTRUCT contours rasterised onto the image grid: centres inside by the even-odd rule, references checked.

The contours were made from the source mask by marching squares at 0.5 (each boundary halfway between an
inside and an outside voxel centre), so the rasterised mask must give the source back (Dice >= 0.98).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core.dicom.rtstruct import fill_polygon, rasterise_rtstruct
from harmony.core.dicom.series import read_series
from harmony.core.errors import CaseError
from tests.core.dicom.study import PATIENTS


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.mark.parametrize("patient", [p[0] for p in PATIENTS])
def test_rtstruct_gives_the_source_mask_back(study, patient):
    root, written = study
    image, info = read_series(root / patient / "study" / "CT")
    mask, provenance = rasterise_rtstruct(root / patient / "study" / "RS" / "rtstruct.dcm", image, info, "gtv.*")
    got = sitk.GetArrayFromImage(mask).astype(bool)
    assert dice(got, written[patient]["lesion"]) >= 0.98
    assert provenance == {"sop_instance_uid": written[patient]["rtstruct_uid"], "roi_name": "GTV-1"}
    assert mask.GetDirection() == image.GetDirection() and mask.GetOrigin() == image.GetOrigin()


def test_an_unknown_or_ambiguous_roi_names_the_rois_present(study):
    root, _ = study
    image, info = read_series(root / "LUNG-001" / "study" / "CT")
    path = root / "LUNG-001" / "study" / "RS" / "rtstruct.dcm"
    with pytest.raises(CaseError, match=r"no ROI matches 'Heart'; the ROIs are \['GTV-1', 'Lung'\]"):
        rasterise_rtstruct(path, image, info, "Heart")
    with pytest.raises(CaseError, match="ambiguous"):
        rasterise_rtstruct(path, image, info, ".*")
    with pytest.raises(CaseError, match="holds 2 ROIs"):
        rasterise_rtstruct(path, image, info, None)


def test_a_structure_set_of_another_frame_of_reference_names_both_uids(study, tmp_path):
    root, _ = study
    image, info = read_series(root / "LUNG-001" / "study" / "CT")
    ds = pydicom.dcmread(root / "LUNG-001" / "study" / "RS" / "rtstruct.dcm")
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3.999"
    ds.save_as(tmp_path / "rs.dcm")
    with pytest.raises(CaseError, match=rf"frame of reference 1\.2\.3\.999, .* in {info.frame_of_reference_uid}"):
        rasterise_rtstruct(tmp_path / "rs.dcm", image, info, "GTV-1")


def test_a_structure_set_of_another_series_is_refused(study):
    root, written = study
    image, info = read_series(root / "LUNG-001" / "study" / "CT")
    other = root / "LUNG-003" / "study" / "RS" / "rtstruct.dcm"
    with pytest.raises(CaseError, match=rf"{written['LUNG-003']['frame_uid']}.*{info.frame_of_reference_uid}"):
        rasterise_rtstruct(other, image, info, "GTV-1")


def test_a_contour_referencing_a_foreign_instance_names_it(study, tmp_path):
    root, _ = study
    image, info = read_series(root / "LUNG-001" / "study" / "CT")
    ds = pydicom.dcmread(root / "LUNG-001" / "study" / "RS" / "rtstruct.dcm")
    ds.ROIContourSequence[0].ContourSequence[0].ContourImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.save_as(tmp_path / "rs.dcm")
    with pytest.raises(CaseError, match=rf"instance 1\.2\.3\.4\.5, which is not a slice of image series "
                                        rf"{info.series_uid}"):
        rasterise_rtstruct(tmp_path / "rs.dcm", image, info, "GTV-1")


def test_a_contour_between_slices_is_refused(study, tmp_path):
    root, _ = study
    image, info = read_series(root / "LUNG-001" / "study" / "CT")
    ds = pydicom.dcmread(root / "LUNG-001" / "study" / "RS" / "rtstruct.dcm")
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    data = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
    data[:, 2] += 2.5  # half of the 5 mm slice spacing (the series is axial)
    contour.ContourData = [f"{v:.6f}" for v in data.ravel()]
    ds.save_as(tmp_path / "rs.dcm")
    with pytest.raises(CaseError, match="off the nearest image slice"):
        rasterise_rtstruct(tmp_path / "rs.dcm", image, info, "GTV-1")


def test_a_hole_and_an_island_combine_by_even_odd():
    outer = np.array([[0.5, 0.5], [0.5, 8.5], [8.5, 8.5], [8.5, 0.5]])
    hole = np.array([[2.5, 2.5], [2.5, 6.5], [6.5, 6.5], [6.5, 2.5]])
    island = np.array([[3.5, 3.5], [3.5, 5.5], [5.5, 5.5], [5.5, 3.5]])
    filled = fill_polygon(outer, (10, 10)) ^ fill_polygon(hole, (10, 10)) ^ fill_polygon(island, (10, 10))
    assert filled.sum() == 64 - 16 + 4
    assert filled[1, 1] and not filled[3, 3] and filled[4, 4]


@settings(max_examples=60, deadline=None)
@given(st.floats(-3, 12), st.floats(-3, 12), st.floats(0.1, 9), st.floats(0.1, 9))
def test_a_rectangle_holds_the_centres_of_the_half_open_box(row, col, height, width):
    polygon = np.array([[row, col], [row, col + width], [row + height, col + width], [row + height, col]])
    got = fill_polygon(polygon, (12, 14))
    rows, cols = np.arange(12)[:, None], np.arange(14)[None, :]
    want = (rows >= row) & (rows < row + height) & (cols >= col) & (cols < col + width)
    assert np.array_equal(got, want)
    assert np.array_equal(fill_polygon(polygon[::-1], (12, 14)), want)  # the winding does not matter
