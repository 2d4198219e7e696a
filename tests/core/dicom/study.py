"""A small DICOM study written from the shared lung1 case: 4 patients, 2 manufacturers, one oblique series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tests.core.dicom.writers import rotated, write_rtstruct, write_seg, write_series

__all__ = ["PATIENTS", "lung1_crop", "write_study"]

#: patient id, manufacturer and model, sex, age, rescale slope, oblique
PATIENTS = (
    ("LUNG-001", ("SIEMENS", "SOMATOM Definition AS"), "F", "063Y", 1.0, False),
    ("LUNG-002", ("SIEMENS", "SOMATOM Definition AS"), "M", "071Y", 0.5, True),
    ("LUNG-003", ("GE MEDICAL SYSTEMS", "LightSpeed VCT"), "M", "058Y", 1.0, False),
    ("LUNG-004", ("GE MEDICAL SYSTEMS", "LightSpeed VCT"), "F", "049Y", 1.0, False),
)


def lung1_crop(folder: Path) -> tuple[sitk.Image, sitk.Image]:
    """The lesion's neighbourhood of the vendored lung1 crop: 40 x 40 x 9 voxels, the whole ROI inside."""
    image = sitk.ReadImage(str(folder / "lung1_image.nrrd"))
    mask = sitk.ReadImage(str(folder / "lung1_label.nrrd"))
    index, size = [56, 56, 5], [40, 40, 9]
    return sitk.RegionOfInterest(image, size, index), sitk.RegionOfInterest(mask, size, index)


def write_study(root: Path, image: sitk.Image, mask: sitk.Image, *, seed: int = 0) -> dict[str, dict]:
    """Write the patients' CT series (each with its own integer noise, so their features differ) and an RTSTRUCT
    each (ROIs "GTV-1" and "Lung"); patient 3 also gets a SEG. Returns patient id -> written UIDs and volumes."""
    rng = np.random.default_rng(seed)
    lesion = sitk.GetArrayFromImage(mask) == 1
    lung = np.zeros_like(lesion)
    lung[2:7, 5:35, 5:35] = True
    written = {}
    for n, (patient_id, manufacturer, sex, age, slope, oblique) in enumerate(PATIENTS):
        voxels = sitk.GetArrayFromImage(image).astype(np.int32)
        voxels = np.clip(voxels + rng.integers(-30, 31, voxels.shape), -1024, 3000).astype(np.int16)
        volume = sitk.GetImageFromArray(voxels)
        volume.CopyInformation(image)
        if oblique:
            volume = rotated(volume)
        study = root / patient_id / "study"
        patient = {"name": f"Test^{patient_id}", "id": patient_id, "sex": sex, "age": age}
        series = write_series(volume, study / "CT", patient=patient, study_uid=f"1.2.826.0.1.3680043.10.1.{n + 1}",
                              manufacturer=manufacturer, slope=slope, rng=rng)
        series["rtstruct_uid"] = write_rtstruct(study / "RS" / "rtstruct.dcm", volume, series,
                                                {"GTV-1": lesion, "Lung": lung})
        if n == 2:
            series["seg_uid"] = write_seg(study / "SEG" / "seg.dcm", series, {"tumour": lesion})
        series.update(image=volume, lesion=lesion)
        written[patient_id] = series
    return written
