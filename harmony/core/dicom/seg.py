"""One segment of a DICOM SEG placed onto the grid of the image series it segments.

Each frame of the selected segment is put on the image slice its ImagePositionPatient falls on; the SEG
must share the series' frame of reference, orientation, pixel spacing and in-plane size (a SEG on another
grid is refused, not resampled). BINARY segments are read as they are; a FRACTIONAL segment's voxel is in
the mask when its value is at least half of MaximumFractionalValue.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.core.dicom.rtstruct import select_name
from harmony.core.dicom.series import SeriesInfo, read_header
from harmony.core.errors import CaseError

__all__ = ["read_seg_mask", "segment_labels", "select_segment"]


def segment_labels(ds: Any) -> dict[int, str]:
    """The segments of a SEG: SegmentNumber -> SegmentLabel.

    Parameters
    ----------
    ds : pydicom.Dataset
        A DICOM SEG.

    Returns
    -------
    dict of int to str
    """
    return {int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in ds.get("SegmentSequence", [])}


def select_segment(labels: dict[int, str], wanted: str | int | None, where: str) -> int:
    """The segment number ``wanted`` selects: a label (or a regular expression matching one label), or a number.

    Parameters
    ----------
    labels : dict of int to str
        :func:`segment_labels`.
    wanted : str, int or None
        A label, a regular expression or a segment number; None when the SEG holds one segment.
    where : str
        The file, for the message.

    Returns
    -------
    int

    Raises
    ------
    CaseError
        No or several segments match.

    Examples
    --------
    >>> select_segment({1: "liver", 2: "tumour"}, "2", "seg.dcm"), select_segment({1: "liver", 2: "tumour"},
    ...                                                                           "tum.*", "seg.dcm")
    (2, 2)
    """
    if wanted is None or str(wanted).strip() == "":
        if len(labels) != 1:
            raise CaseError(f"{where}: holds {len(labels)} segments {labels}; name one in the 'roi' column")
        return next(iter(labels))
    text = str(wanted).strip()
    if text not in labels.values() and text.isdigit():
        if int(text) not in labels:
            raise CaseError(f"{where}: no segment number {text}; the segments are {labels}")
        return int(text)
    label = select_name(list(labels.values()), text, what="segment", where=where)
    return next(k for k, v in labels.items() if v == label)


def _frame_geometry(ds: Any, frame: Any) -> tuple[np.ndarray | None, ...]:
    """A frame's position, orientation, pixel spacing and segment number (per frame, else shared)."""
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]

    def find(sequence: str, tag: str):
        for group in (frame, shared):
            if group is not None and sequence in group and tag in group[sequence][0]:
                return np.atleast_1d(np.asarray(group[sequence][0][tag].value, dtype=float))
        return None

    return (find("PlanePositionSequence", "ImagePositionPatient"),
            find("PlaneOrientationSequence", "ImageOrientationPatient"), find("PixelMeasuresSequence", "PixelSpacing"),
            find("SegmentIdentificationSequence", "ReferencedSegmentNumber"))


def read_seg_mask(path: str | os.PathLike, image: sitk.Image, series: SeriesInfo,
                  segment: str | int | None) -> tuple[sitk.Image, dict[str, str]]:
    """One segment of a DICOM SEG as a mask on ``image``'s grid (the rule is in the module's docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The SEG file.
    image : SimpleITK.Image
        The segmented series, read by :func:`~harmony.core.dicom.series.read_series`.
    series : SeriesInfo
        Its UIDs.
    segment : str, int or None
        :func:`select_segment`.

    Returns
    -------
    (SimpleITK.Image, dict)
        The mask (UInt8, 1 inside) and its provenance: ``sop_instance_uid`` of the SEG and ``roi_name`` (the
        segment's label).

    Raises
    ------
    CaseError
        Not a SEG; no such segment; another frame of reference, series, orientation, spacing or size; a
        frame off the image slices; an empty segment.
    """
    where = str(path)
    ds = read_header(path, pixels=True)
    if str(ds.get("Modality", "")) != "SEG":
        raise CaseError(f"{where}: Modality {ds.get('Modality', '?')!r}, expected a DICOM SEG")
    labels = segment_labels(ds)
    number = select_segment(labels, segment, where)
    frame_uid = str(ds.get("FrameOfReferenceUID", ""))
    if frame_uid and series.frame_of_reference_uid and frame_uid != series.frame_of_reference_uid:
        raise CaseError(f"{where}: is in frame of reference {frame_uid}, the image series {series.series_uid} in "
                        f"{series.frame_of_reference_uid}")
    for ref in ds.get("ReferencedSeriesSequence", []):
        uid = str(ref.get("SeriesInstanceUID", ""))
        if uid and uid != series.series_uid:
            raise CaseError(f"{where}: segments image series {uid}, the image is series {series.series_uid} "
                            f"({series.folder})")
    size = image.GetSize()
    if (int(ds.Columns), int(ds.Rows)) != size[:2]:
        raise CaseError(f"{where}: frames of {ds.Columns}x{ds.Rows} pixels, the image's slices are {size[0]}x{size[1]}")
    try:
        frames = ds.pixel_array
    except Exception as exc:  # no decoder for the transfer syntax, truncated pixel data, ...
        raise CaseError(f"{where}: pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    frames = frames.reshape(-1, int(ds.Rows), int(ds.Columns))
    fractional = str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL"
    threshold = float(ds.get("MaximumFractionalValue", 255)) / 2 if fractional else 0.5
    origin = np.array(image.GetOrigin())
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    to_index = np.linalg.inv(direction * spacing)
    mask = np.zeros(size[::-1], dtype=bool)
    for f, frame in enumerate(ds.get("PerFrameFunctionalGroupsSequence", [])):
        position, orientation, pixel_spacing, frame_segment = _frame_geometry(ds, frame)
        if frame_segment is None:
            raise CaseError(f"{where}: frame {f + 1} names no segment (no SegmentIdentificationSequence)")
        if int(frame_segment[0]) != number:
            continue
        if position is None:
            raise CaseError(f"{where}: frame {f + 1} has no ImagePositionPatient")
        if orientation is not None and np.max(np.abs(orientation - direction[:, :2].T.ravel())) > 1e-4:
            raise CaseError(f"{where}: frame {f + 1} has orientation {orientation.round(6).tolist()}, the image "
                            f"{direction[:, :2].T.ravel().round(6).tolist()}")
        if pixel_spacing is not None and np.max(np.abs(pixel_spacing[::-1] - spacing[:2])) > 1e-4:
            raise CaseError(f"{where}: frame {f + 1} has pixel spacing {pixel_spacing.tolist()}, the image "
                            f"{spacing[1::-1].tolist()}")
        index = to_index @ (position - origin)
        k = int(np.round(index[2]))
        if np.max(np.abs(index - [0, 0, k])) > 0.1 or not 0 <= k < size[2]:
            raise CaseError(f"{where}: frame {f + 1} at {position.round(3).tolist()} is not on a slice of the image")
        mask[k] |= frames[f] >= threshold
    if not mask.any():
        raise CaseError(f"{where}: segment {number} ({labels[number]!r}) is empty")
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(image)
    return out, {"sop_instance_uid": str(ds.get("SOPInstanceUID", "")), "roi_name": labels[number]}
