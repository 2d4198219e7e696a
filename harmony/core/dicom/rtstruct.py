"""An RTSTRUCT ROI rasterised onto the grid of the image series it references.

The rule: every CLOSED_PLANAR contour of the ROI is mapped into the image's continuous voxel index space
(oriented geometry, so oblique series work too) and must lie in one image plane (within
:data:`PLANE_TOLERANCE` of a slice); a voxel is in the mask when its centre is inside the polygon by the
even-odd (crossing-number) rule, a centre exactly on an edge counting as inside on the polygon's lower row
and column index side and outside on its upper side (the half-open rule, so two contours sharing an edge
never both claim a voxel). The contours of one slice are combined by even-odd too: a contour inside another is a hole, a
contour inside a hole is an island. POINT and OPEN contours outline no area and are skipped.

The structure set must belong to the series: its ROI's FrameOfReferenceUID equals the series', and every
instance it references (ContourImageSequence) is a slice of the series; a mismatch names both UIDs.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.core.dicom.series import SeriesInfo, read_header
from harmony.core.errors import CaseError

__all__ = ["PLANE_TOLERANCE", "fill_polygon", "rasterise_rtstruct", "roi_names", "select_name"]

logger = logging.getLogger(__name__)

#: A contour belongs to the slice nearest its plane and must lie within this fraction of the slice spacing
#: of it (contour coordinates are rounded decimal strings; an RTSTRUCT drawn on another grid is refused).
PLANE_TOLERANCE = 0.1


def roi_names(ds: Any) -> dict[int, str]:
    """The ROIs of a structure set: ROINumber -> ROIName.

    Parameters
    ----------
    ds : pydicom.Dataset
        An RTSTRUCT.

    Returns
    -------
    dict of int to str
        In the file's order.
    """
    return {int(item.ROINumber): str(item.get("ROIName", "")) for item in ds.get("StructureSetROISequence", [])}


def select_name(names: list[str], wanted: str, *, what: str, where: str) -> str:
    """The one name of ``names`` that ``wanted`` selects: the equal one, else the one matching it as a regex.

    Parameters
    ----------
    names : list of str
        The names present (ROI names, segment labels).
    wanted : str
        A name, or a regular expression (``GTV.*``).
    what : str
        What the names are ("ROI", "segment"), for the message.
    where : str
        The file, for the message.

    Returns
    -------
    str

    Raises
    ------
    CaseError
        No name or several names match (the names present are listed), or ``wanted`` is not a valid regular
        expression.

    Examples
    --------
    >>> select_name(["GTV-1", "Lung-Left", "Lung-Right"], "gtv.*", what="ROI", where="rs.dcm")
    'GTV-1'
    >>> select_name(["GTV-1", "Lung-Left", "Lung-Right"], "Lung.*", what="ROI", where="rs.dcm")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: rs.dcm: ROI 'Lung.*' is ambiguous: it matches ['Lung-Left', 'Lung-Right']
    """
    if wanted in names:
        return wanted
    try:
        pattern = re.compile(wanted, re.IGNORECASE)
    except re.error as exc:
        raise CaseError(f"{where}: {what} {wanted!r} is no name there and not a regular expression ({exc})") from None
    matches = [n for n in names if pattern.fullmatch(n)]
    if not matches:
        raise CaseError(f"{where}: no {what} matches {wanted!r}; the {what}s are {names}")
    if len(matches) > 1:
        raise CaseError(f"{where}: {what} {wanted!r} is ambiguous: it matches {matches}")
    return matches[0]


def fill_polygon(rows_cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres are inside a polygon by the even-odd rule (half-open on edges).

    Parameters
    ----------
    rows_cols : numpy.ndarray
        Shape (n, 2): the vertices as continuous (row, column) pixel indices; pixel (r, c) has its centre at
        (r, c). The polygon is closed (the last vertex joins the first).
    shape : (int, int)
        The slice's (rows, columns).

    Returns
    -------
    numpy.ndarray
        bool, ``shape``.

    Examples
    --------
    >>> fill_polygon(np.array([[0.5, 0.5], [0.5, 3.5], [2.5, 3.5], [2.5, 0.5]]), (4, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    n_rows, n_cols = shape
    y0, x0 = rows_cols[:, 0], rows_cols[:, 1]
    y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
    # crossings counted to the right of each centre: toggles[r, c] counts edges crossing row r at x > c
    toggles = np.zeros((n_rows, n_cols + 1), dtype=np.int64)
    for ya, xa, yb, xb in zip(y0, x0, y1, x1):
        if ya == yb:
            continue
        low, high = min(ya, yb), max(ya, yb)
        rows = np.arange(max(int(np.ceil(low)), 0), min(int(np.ceil(high)) - 1, n_rows - 1) + 1)
        rows = rows[(rows >= low) & (rows < high)]  # half-open in y: the edge owns its lower end
        if not rows.size:
            continue
        x_cross = xa + (rows - ya) * (xb - xa) / (yb - ya)
        # centres strictly left of the crossing see it: columns 0 .. ceil(x_cross) - 1
        stop = np.clip(np.ceil(x_cross).astype(np.int64), 0, n_cols)
        np.add.at(toggles, (rows, np.zeros_like(rows)), 1)
        np.add.at(toggles, (rows, stop), -1)
    return (np.cumsum(toggles, axis=1)[:, :n_cols] % 2).astype(bool)


def _check_references(ds: Any, roi_number: int, series: SeriesInfo, where: str) -> None:
    roi_item = next(i for i in ds.StructureSetROISequence if int(i.ROINumber) == roi_number)
    frame = str(roi_item.get("ReferencedFrameOfReferenceUID", "") or ds.get("FrameOfReferenceUID", ""))
    if frame and series.frame_of_reference_uid and frame != series.frame_of_reference_uid:
        raise CaseError(f"{where}: ROI {roi_item.get('ROIName', roi_number)!r} is in frame of reference {frame}, "
                        f"the image series {series.series_uid} in {series.frame_of_reference_uid}")
    for frame_item in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame_item.get("RTReferencedStudySequence", []):
            for ref in study.get("RTReferencedSeriesSequence", []):
                uid = str(ref.get("SeriesInstanceUID", ""))
                if uid and uid != series.series_uid:
                    raise CaseError(f"{where}: references image series {uid}, the image is series "
                                    f"{series.series_uid} ({series.folder})")
    slices = set(series.sop_instance_uids)
    for roi_contour in ds.get("ROIContourSequence", []):
        if int(roi_contour.ReferencedROINumber) != roi_number:
            continue
        for contour in roi_contour.get("ContourSequence", []):
            for image in contour.get("ContourImageSequence", []):
                uid = str(image.get("ReferencedSOPInstanceUID", ""))
                if uid and uid not in slices:
                    raise CaseError(f"{where}: a contour references instance {uid}, which is not a slice of "
                                    f"image series {series.series_uid} ({series.folder})")


def rasterise_rtstruct(path: str | os.PathLike, image: sitk.Image, series: SeriesInfo,
                       roi: str | None) -> tuple[sitk.Image, dict[str, str]]:
    """Rasterise one ROI of an RTSTRUCT onto ``image``'s grid (the rule is in the module's docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The RTSTRUCT file.
    image : SimpleITK.Image
        The referenced series, read by :func:`~harmony.core.dicom.series.read_series`.
    series : SeriesInfo
        Its UIDs.
    roi : str or None
        The ROI's name or a regular expression matching it (:func:`select_name`); None when the structure
        set holds one ROI.

    Returns
    -------
    (SimpleITK.Image, dict)
        The mask (UInt8, 1 inside, ``image``'s geometry) and its provenance: ``sop_instance_uid`` of the
        RTSTRUCT and ``roi_name``.

    Raises
    ------
    CaseError
        Not an RTSTRUCT; no or several ROIs selected; the structure set does not reference this series; a
        contour off the image planes; an empty mask.
    """
    where = str(path)
    ds = read_header(path, pixels=True)
    if str(ds.get("Modality", "")) != "RTSTRUCT":
        raise CaseError(f"{where}: Modality {ds.get('Modality', '?')!r}, expected an RTSTRUCT")
    names = roi_names(ds)
    if roi is None:
        if len(names) != 1:
            raise CaseError(f"{where}: holds {len(names)} ROIs {list(names.values())}; name one in the 'roi' column")
        name = next(iter(names.values()))
    else:
        name = select_name(list(names.values()), roi, what="ROI", where=where)
    number = next(k for k, v in names.items() if v == name)
    _check_references(ds, number, series, where)

    size = image.GetSize()
    origin = np.array(image.GetOrigin())
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    to_index = np.linalg.inv(direction * spacing)  # index = inv(D diag(s)) (p - o)
    mask = np.zeros(size[::-1], dtype=bool)
    skipped = 0
    for roi_contour in ds.get("ROIContourSequence", []):
        if int(roi_contour.ReferencedROINumber) != number:
            continue
        for contour in roi_contour.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                skipped += 1
                continue
            points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
            index = (points - origin) @ to_index.T  # (n, 3): x, y, z continuous indices
            k = int(np.round(index[:, 2].mean()))
            off = np.abs(index[:, 2] - k).max()
            if off > PLANE_TOLERANCE:
                raise CaseError(f"{where}: ROI {name!r}: a contour lies {off * spacing[2]:.3g} mm off the nearest "
                                f"image slice ({k}); the structure set was drawn on another grid")
            if not 0 <= k < size[2]:
                raise CaseError(f"{where}: ROI {name!r}: a contour lies outside the image (slice {k} of {size[2]})")
            mask[k] ^= fill_polygon(index[:, [1, 0]], (size[1], size[0]))
    if skipped:
        logger.warning("%s: ROI %r: %d POINT or OPEN contour(s) skipped (they outline no area)", where, name, skipped)
    if not mask.any():
        raise CaseError(f"{where}: ROI {name!r} covers no voxel centre of the image (no closed contour, or contours "
                        "smaller than a voxel)")
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(image)
    return out, {"sop_instance_uid": str(ds.get("SOPInstanceUID", "")), "roi_name": name}
