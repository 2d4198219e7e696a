"""A DICOM series read back equals the volume it was written from, voxel for voxel, with the same features."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import featureextractor

from harmony.core.dicom.series import read_series
from harmony.core.errors import CaseError
from tests.core.dicom.study import PATIENTS


@pytest.mark.parametrize("patient", [p[0] for p in PATIENTS])
def test_series_equals_the_source_voxels_and_geometry(study, patient):
    root, written = study
    source = written[patient]["image"]
    image, info = read_series(root / patient / "study" / "CT")
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(source))  # slope 0.5 too
    for name in ("Spacing", "Origin", "Direction"):  # oblique too: the direction is not axis-aligned
        assert np.allclose(getattr(image, f"Get{name}")(), getattr(source, f"Get{name}")(), atol=1e-6)
    assert info.series_uid == written[patient]["series_uid"]
    assert list(info.sop_instance_uids) == written[patient]["sops"]  # slice order, not file-name order


def test_the_oblique_series_is_oblique(study):
    direction = np.array(read_series(study[0] / "LUNG-002" / "study" / "CT")[0].GetDirection())
    assert np.sum(np.abs(direction) > 1e-3) > 3


def test_features_from_dicom_equal_those_of_the_source(study):
    root, written = study
    params = {"setting": {"binWidth": 25, "label": 1},
              "featureClass": {"firstorder": None, "glcm": None, "shape": None}, "imageType": {"Original": {}}}
    extractor = featureextractor.RadiomicsFeatureExtractor(params)
    for patient in ("LUNG-001", "LUNG-002"):
        source = written[patient]["image"]
        mask = sitk.GetImageFromArray(written[patient]["lesion"].astype(np.uint8))
        mask.CopyInformation(source)
        image, _ = read_series(root / patient / "study" / "CT")
        mask_on_dicom = sitk.Image(mask)
        mask_on_dicom.CopyInformation(image)
        want = {k: v for k, v in extractor.execute(source, mask).items() if not k.startswith("diagnostics")}
        got = {k: v for k, v in extractor.execute(image, mask_on_dicom).items() if not k.startswith("diagnostics")}
        assert want.keys() == got.keys() and len(want) > 40
        for key, value in want.items():
            assert float(got[key]) == pytest.approx(float(value), rel=1e-9, abs=1e-12), key


@pytest.fixture
def series_copy(study, tmp_path):
    folder = tmp_path / "CT"
    shutil.copytree(study[0] / "LUNG-001" / "study" / "CT", folder)
    return folder, study[1]["LUNG-001"]["sops"]


def test_a_missing_slice_is_refused_as_irregular_spacing(series_copy):
    folder, sops = series_copy
    (folder / f"{sops[4]}.dcm").unlink()
    with pytest.raises(CaseError, match=r"irregular slice spacing: 10 mm .* 5 mm elsewhere \(a missing slice\?\)"):
        read_series(folder)


def test_a_duplicate_slice_is_refused(series_copy):
    folder, sops = series_copy
    import pydicom
    ds = pydicom.dcmread(folder / f"{sops[3]}.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "copy.dcm")
    with pytest.raises(CaseError, match="share position"):
        read_series(folder)


def test_two_series_in_one_folder_are_refused(series_copy, study):
    folder, _ = series_copy
    other = study[0] / "LUNG-003" / "study" / "CT"
    shutil.copy(next(other.iterdir()), folder / "other.dcm")
    with pytest.raises(CaseError, match="holds 2 image series"):
        read_series(folder)


def test_a_slice_with_another_orientation_is_refused(series_copy):
    folder, sops = series_copy
    import pydicom
    ds = pydicom.dcmread(folder / f"{sops[2]}.dcm")
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]
    ds.save_as(folder / f"{sops[2]}.dcm")
    with pytest.raises(CaseError, match="slices differ in orientation"):
        read_series(folder)


def test_a_folder_without_dicom_images_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no images")
    with pytest.raises(CaseError, match="no DICOM image file"):
        read_series(tmp_path)
