"""Reading one DICOM image series (a folder) into a SimpleITK volume, with pydicom.

The slices are sorted by their position along the normal of the image plane (the cross product of the row
and column direction cosines); the volume keeps the oriented geometry (origin, spacing, direction) and
holds the rescaled values (``stored * RescaleSlope + RescaleIntercept``, integers when slope and intercept
are). A series that cannot be stacked into a regular grid is refused with the reason named: differing
orientation or size, duplicate positions, slices off the normal, irregular spacing (a missing slice),
multi-frame or colour images, pixel data that cannot be decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.core.errors import CaseError

__all__ = [
    "NON_IMAGE_MODALITIES",
    "SeriesInfo",
    "image_plane",
    "is_dicom_file",
    "read_header",
    "read_series",
    "slice_normal",
]

#: Modalities whose objects are not image slices (structure sets, segmentations, plans, reports ...).
NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "SEG", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG",
                                  "DOC", "ECG", "PLAN", "RWV", "FID"})
#: Largest difference allowed between the direction cosines of two slices, and between a slice's offset along
#: the normal and the series' regular spacing (as a fraction of it).
ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SeriesInfo:
    """Where a series came from: its UIDs, its slices' SOPInstanceUIDs (in slice order) and header tags.

    Parameters
    ----------
    folder : str
        The series folder.
    study_uid, series_uid, frame_of_reference_uid : str
        StudyInstanceUID, SeriesInstanceUID and FrameOfReferenceUID ("" when absent).
    sop_instance_uids : tuple of str
        The slices' SOPInstanceUIDs, first slice (lowest position along the normal) first.
    modality : str
        Modality (CT, MR, PT ...).
    """

    folder: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: tuple[str, ...]
    modality: str


def _pydicom():
    try:
        import pydicom
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise CaseError("reading DICOM needs pydicom: pip install 'harmony-radiomics[dicom]'") from None
    return pydicom


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` at byte 128).

    Parameters
    ----------
    path : str or os.PathLike
        Any path.

    Returns
    -------
    bool
        False for a folder, a missing file or any other format (NRRD, NIfTI ...).

    Examples
    --------
    >>> is_dicom_file("no/such/file.dcm")
    False
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: str | os.PathLike, *, pixels: bool = False) -> Any:
    """Read a DICOM file with pydicom; without ``pixels`` only the header (``stop_before_pixels``).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    pixels : bool, default False
        Read the pixel data too.

    Returns
    -------
    pydicom.Dataset

    Raises
    ------
    CaseError
        The file is not DICOM or is damaged (the message names it and pydicom's reason).

    Examples
    --------
    >>> read_header("no/such/file.dcm")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: no/such/file.dcm: cannot read as DICOM (FileNotFoundError: ...)
    """
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except Exception as exc:  # pydicom raises many types for damaged files (InvalidDicomError, EOFError, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CaseError(f"{path}: cannot read as DICOM ({type(exc).__name__}: {reason})") from None


def image_plane(ds: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slice's position, row and column direction cosines and pixel spacing, from its header.

    Parameters
    ----------
    ds : pydicom.Dataset
        A slice's header.
    where : str
        The file, for the message.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ImagePositionPatient (3,), ImageOrientationPatient (6,: row then column cosines), and the spacing
        (x, y) in mm: the spacing between columns, then between rows.

    Raises
    ------
    CaseError
        A tag is missing or malformed (a projection or secondary capture has no patient geometry).
    """
    missing = [t for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if t not in ds]
    if missing:
        raise CaseError(f"{where}: no {', '.join(missing)}: not a cross-sectional image with patient geometry "
                        f"(Modality {ds.get('Modality', '?')})")
    try:
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    except (TypeError, ValueError) as exc:
        raise CaseError(f"{where}: malformed patient geometry ({exc})") from None
    if position.shape != (3,) or orientation.shape != (6,):
        raise CaseError(f"{where}: ImagePositionPatient needs 3 values and ImageOrientationPatient 6, got "
                        f"{position.size} and {orientation.size}")
    return position, orientation, np.array([column_spacing, row_spacing])


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """The unit normal of an image plane: row cosines x column cosines (DICOM's slice direction).

    Parameters
    ----------
    orientation : numpy.ndarray
        ImageOrientationPatient, 6 values.

    Returns
    -------
    numpy.ndarray
        Shape (3,).

    Examples
    --------
    >>> slice_normal(np.array([1.0, 0, 0, 0, 1, 0])).tolist()
    [0.0, 0.0, 1.0]
    """
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def _slice_headers(folder: Path) -> list[tuple[Path, Any]]:
    """The image slices of the folder's one image series (files of other modalities are skipped)."""
    if not folder.is_dir():
        raise CaseError(f"{folder}: DICOM series folder not found")
    headers, series = [], {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if not is_dicom_file(path):
            continue
        ds = read_header(path)
        if str(ds.get("Modality", "")).upper() in NON_IMAGE_MODALITIES or "Rows" not in ds:
            continue
        headers.append((path, ds))
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(path.name)
    if not headers:
        raise CaseError(f"{folder}: no DICOM image file in the folder")
    if len(series) > 1:
        counts = ", ".join(f"{uid or '(none)'}: {len(names)} files" for uid, names in series.items())
        raise CaseError(f"{folder}: holds {len(series)} image series ({counts}); give one series per folder")
    return headers


def _check_slices(folder: Path, headers: list[tuple[Path, Any]]) -> tuple[list[int], np.ndarray, np.ndarray,
                                                                            np.ndarray, float]:
    """Slice order, origin, orientation, in-plane spacing and slice spacing; refuses irregular stacks."""
    planes = [image_plane(ds, str(path)) for path, ds in headers]
    first_path, first = headers[0]
    for (path, ds), (_, orientation, spacing) in zip(headers, planes):
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise CaseError(f"{path}: multi-frame image ({ds.NumberOfFrames} frames): only single-frame slices "
                            "are read")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise CaseError(f"{path}: {ds.SamplesPerPixel} samples per pixel ({ds.get('PhotometricInterpretation')})"
                            ": not a scalar (greyscale) image")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise CaseError(f"{folder}: slices differ in size: {first_path.name} is {first.Columns}x{first.Rows}, "
                            f"{path.name} {ds.Columns}x{ds.Rows}")
        if np.max(np.abs(orientation - planes[0][1])) > ORIENTATION_TOLERANCE:
            raise CaseError(f"{folder}: slices differ in orientation: {first_path.name} "
                            f"{planes[0][1].round(6).tolist()}, {path.name} {orientation.round(6).tolist()}")
        if np.max(np.abs(spacing - planes[0][2])) > ORIENTATION_TOLERANCE:
            raise CaseError(f"{folder}: slices differ in pixel spacing: {first_path.name} {planes[0][2].tolist()}, "
                            f"{path.name} {spacing.tolist()}")
    orientation = planes[0][1]
    normal = slice_normal(orientation)
    positions = np.array([p for p, _, _ in planes])
    along = positions @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    along, positions = along[order], positions[order]
    names = [headers[i][0].name for i in order]
    off_normal = np.linalg.norm((positions - positions[0]) - np.outer(along - along[0], normal), axis=1)
    if off_normal.max(initial=0.0) > 1e-2:
        worst = int(np.argmax(off_normal))
        raise CaseError(f"{folder}: slice {names[worst]} is {off_normal[worst]:.3g} mm off the normal through the "
                        "first slice (a tilted gantry or a sheared stack is not read)")
    gaps = np.diff(along)
    if len(gaps) and gaps.min() < 1e-3:
        at = int(np.argmin(gaps))
        raise CaseError(f"{folder}: slices {names[at]} and {names[at + 1]} share position {along[at]:.4g} mm along "
                        "the normal (duplicate slice or two acquisitions in one series)")
    if len(gaps):
        spacing_z = float(np.median(gaps))
        worst = int(np.argmax(np.abs(gaps - spacing_z)))
        if abs(gaps[worst] - spacing_z) > SPACING_TOLERANCE * spacing_z:
            raise CaseError(f"{folder}: irregular slice spacing: {gaps[worst]:.4g} mm between {names[worst]} and "
                            f"{names[worst + 1]}, {spacing_z:.4g} mm elsewhere (a missing slice?)")
    else:
        spacing_z = float(first.get("SpacingBetweenSlices", None) or first.get("SliceThickness", None) or 1.0)
    return order, positions[0], orientation, planes[0][2], spacing_z


def _pixels(path: Path) -> tuple[np.ndarray, float, float]:
    ds = read_header(path, pixels=True)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # no decoder for the transfer syntax, truncated pixel data, ...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"{path}: pixel data cannot be decoded ({name}): {reason}") from None
    slope = float(ds.get("RescaleSlope", None) or 1.0)
    intercept = float(ds.get("RescaleIntercept", None) or 0.0)
    return stored, slope, intercept


def _rescaled(stacked: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """``stored * slope + intercept`` per slice: integers when every slope and intercept is one, else float64."""
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if integral:
        values = stacked.astype(np.int64) * slopes.astype(np.int64)[:, None, None] \
            + intercepts.astype(np.int64)[:, None, None]
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if values.size == 0 or (values.min() >= info.min and values.max() <= info.max):
                return values.astype(dtype)
        return values
    return stacked.astype(np.float64) * slopes[:, None, None] + intercepts[:, None, None]


def read_series(folder: str | os.PathLike) -> tuple[sitk.Image, SeriesInfo]:
    """Read the DICOM image series in ``folder`` as a SimpleITK volume with its oriented geometry.

    Files of other modalities in the folder (an RTSTRUCT, a SEG) and non-DICOM files are skipped; the folder
    must hold exactly one image series.

    Parameters
    ----------
    folder : str or os.PathLike
        The series folder.

    Returns
    -------
    (SimpleITK.Image, SeriesInfo)
        The volume (x along the rows' direction, y along the columns', z along the slice normal; rescaled
        values) and the series' UIDs.

    Raises
    ------
    CaseError
        Naming the folder or file and the reason: no image file, several series, slices that do not form a
        regular grid, multi-frame or colour images, undecodable pixel data.

    Examples
    --------
    >>> read_series("no/such/series")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: no/such/series: DICOM series folder not found
    """
    folder = Path(folder)
    headers = _slice_headers(folder)
    order, origin, orientation, spacing_xy, spacing_z = _check_slices(folder, headers)
    slices, slopes, intercepts = [], [], []
    for i in order:
        stored, slope, intercept = _pixels(headers[i][0])
        slices.append(stored)
        slopes.append(slope)
        intercepts.append(intercept)
    volume = _rescaled(np.stack(slices), np.array(slopes), np.array(intercepts))
    image = sitk.GetImageFromArray(volume)
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing((float(spacing_xy[0]), float(spacing_xy[1]), float(spacing_z)))
    direction = np.column_stack([orientation[:3], orientation[3:], slice_normal(orientation)])
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    first = headers[order[0]][1]
    info = SeriesInfo(folder=str(folder), study_uid=str(first.get("StudyInstanceUID", "")),
                      series_uid=str(first.get("SeriesInstanceUID", "")),
                      frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
                      sop_instance_uids=tuple(str(headers[i][1].get("SOPInstanceUID", "")) for i in order),
                      modality=str(first.get("Modality", "")))
    return image, info
