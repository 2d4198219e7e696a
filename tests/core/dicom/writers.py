"""Writing DICOM test studies from volumes: CT series (pydicom), RTSTRUCT (contours from a mask) and SEG (highdicom).

The tags are the ones a scanner and a planning system write (patient, study, series, equipment, geometry,
rescale); the file names are shuffled UIDs, so nothing can rely on them being in slice order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    RTStructureSetStorage,
    generate_uid,
)
from skimage.measure import find_contours

__all__ = ["contours_of", "rotated", "write_rtstruct", "write_seg", "write_series"]

CT = CTImageStorage


def rotated(image: sitk.Image, angles_rad: Sequence[float] = (0.3, -0.2, 0.5)) -> sitk.Image:
    """The same voxels with an oblique direction (rotations about x, y, z) around the original origin."""
    out = sitk.Image(image)
    transform = sitk.Euler3DTransform((0, 0, 0), *angles_rad)
    direction = np.array(transform.GetMatrix()).reshape(3, 3) @ np.array(image.GetDirection()).reshape(3, 3)
    out.SetDirection(tuple(direction.ravel()))
    return out


def _ds(value: float) -> str:
    return f"{value:.10g}"


def _base(patient: dict, study_uid: str, frame_uid: str, manufacturer: tuple[str, str], modality: str) -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = patient["name"], patient["id"]
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "19600101", patient["sex"], patient["age"]
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20240115", "101500", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "A" + patient["id"], ""
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = manufacturer
    ds.Modality, ds.SpecificCharacterSet = modality, "ISO_IR 100"
    return ds


def _save(ds: Dataset, sop_class: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.save_as(path, enforce_file_format=True)


def write_series(image: sitk.Image, folder: Path, *, patient: dict, study_uid: str, manufacturer: tuple[str, str],
                 slope: float = 1.0, intercept: float = -1024.0, rng: np.random.Generator) -> dict:
    """Write ``image`` as a CT series (stored = (value - intercept) / slope, unsigned 16 bit); returns its UIDs,
    the slice datasets (for highdicom) and their SOPInstanceUIDs in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    stored = (values - intercept) / slope
    assert np.all(stored == np.round(stored)) and stored.min() >= 0 and stored.max() < 2**16
    stored = stored.astype(np.uint16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    series_uid, frame_uid = generate_uid(), generate_uid()
    slices = []
    for k in rng.permutation(stored.shape[0]):
        ds = _base(patient, study_uid, frame_uid, manufacturer, "CT")
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 2, "CHEST 5mm"
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), int(k) + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [_ds(v) for v in image.TransformIndexToPhysicalPoint((0, 0, int(k)))]
        ds.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [_ds(image.GetSpacing()[1]), _ds(image.GetSpacing()[0])]
        ds.SliceThickness = _ds(image.GetSpacing()[2])
        ds.KVP, ds.ConvolutionKernel = "120", "B30f"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "HU"
        ds.PixelData = stored[k].tobytes()
        _save(ds, CT, folder / f"{ds.SOPInstanceUID}.dcm")
        slices.append((int(k), ds))
    slices.sort(key=lambda item: item[0])
    datasets = [ds for _, ds in slices]
    return {"series_uid": series_uid, "frame_uid": frame_uid, "study_uid": study_uid, "datasets": datasets,
            "sops": [ds.SOPInstanceUID for ds in datasets], "patient": patient, "manufacturer": manufacturer}


def contours_of(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(slice, (n, 2) row/column polygon) of every boundary of a (z, y, x) mask: marching squares at 0.5,
    so each boundary passes halfway between the centres of an inside and an outside voxel."""
    out = []
    for k in range(mask.shape[0]):
        if not mask[k].any():
            continue
        padded = np.pad(mask[k].astype(float), 1)  # closed contours at the border too
        for contour in find_contours(padded, 0.5):
            out.append((k, contour[:-1] - 1.0))  # find_contours repeats the first vertex last
    return out


def write_rtstruct(path: Path, image: sitk.Image, series: dict, rois: dict[str, np.ndarray]) -> str:
    """Write an RTSTRUCT of ``rois`` (name -> (z, y, x) mask on ``image``'s grid) referencing ``series``."""
    ds = _base(series["patient"], series["study_uid"], series["frame_uid"], ("Planning Co", "Contour 2"), "RTSTRUCT")
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), generate_uid(), 90
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "RS", "20240116", "090000"
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = series["series_uid"]
    ref_series.ContourImageSequence = DicomSequence([_image_ref(sop) for sop in series["sops"]])
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID, ref_study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", series["study_uid"]
    ref_study.RTReferencedSeriesSequence = DicomSequence([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = series["frame_uid"], DicomSequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, mask) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ROIGenerationAlgorithm = number, name, "MANUAL"
        roi.ReferencedFrameOfReferenceUID = series["frame_uid"]
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = number, [255, 0, 0]
        item.ContourSequence = DicomSequence()
        for k, polygon in contours_of(mask):
            points = [image.TransformContinuousIndexToPhysicalPoint((float(c), float(r), float(k)))
                      for r, c in polygon]
            contour = Dataset()
            contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
            contour.ContourData = [_ds(v) for p in points for v in p]
            contour.ContourImageSequence = DicomSequence([_image_ref(series["sops"][k])])
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "GTV", ""
        ds.RTROIObservationsSequence.append(observation)
    _save(ds, RTStructureSetStorage, path)
    return ds.SOPInstanceUID


def _image_ref(sop: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT, sop
    return ref


def write_seg(path: Path, series: dict, segments: dict[str, np.ndarray], *, fractional: bool = False) -> str:
    """Write a DICOM SEG (highdicom) of ``segments`` (label -> (z, y, x) mask, or fractions in [0, 1])."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for number, label in enumerate(segments, start=1)]
    pixels = np.stack(list(segments.values()), axis=-1)
    seg = hd.seg.Segmentation(
        source_images=series["datasets"], pixel_array=pixels.astype(np.float32 if fractional else np.uint8),
        segmentation_type="FRACTIONAL" if fractional else "BINARY",
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=91,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Seg Co", manufacturer_model_name="Seg 1",
        software_versions="1.0", device_serial_number="42")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return seg.SOPInstanceUID
