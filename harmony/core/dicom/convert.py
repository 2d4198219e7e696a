"""DICOM rows of a cases table converted to cached NRRD volumes, with their source UIDs beside them.

A row whose ``image`` is a folder is a DICOM series; a row whose ``mask`` is an RTSTRUCT or a DICOM SEG is
rasterised onto that series (its ``roi`` cell selects the ROI or segment). The row's ``image`` and ``mask``
then point at the converted volumes in the cache (:mod:`harmony.core.dicom.cache`) and the ``dicom_*``
columns record the sources: the folder and file, StudyInstanceUID, SeriesInstanceUID, the SOPInstanceUID of
the RTSTRUCT or SEG and the ROI's name. A converted mask holds label 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.dicom.cache import cached_volume, content_digest
from harmony.core.dicom.rtstruct import rasterise_rtstruct
from harmony.core.dicom.seg import read_seg_mask
from harmony.core.dicom.series import is_dicom_file, read_header, read_series
from harmony.core.errors import CaseError
from harmony.core.progress import progress_bar

__all__ = ["DICOM_COLUMNS", "DICOM_PREFIX", "convert_case", "convert_cases", "dicom_sources", "mask_kind"]

DICOM_PREFIX = schema.DICOM_PREFIX
DICOM_COLUMNS = tuple(DICOM_PREFIX + name for name in ("image", "mask", "study_uid", "series_uid", "mask_uid",
                                                         "roi"))
_MASK_KINDS = {"RTSTRUCT": "rtstruct", "SEG": "seg"}


def mask_kind(path: str) -> str | None:
    """``"rtstruct"`` or ``"seg"`` for a DICOM structure set or segmentation, None for anything else.

    Parameters
    ----------
    path : str
        A mask file.

    Returns
    -------
    str or None

    Examples
    --------
    >>> mask_kind("no/such/mask.nrrd") is None
    True
    """
    if not is_dicom_file(path):
        return None
    return _MASK_KINDS.get(str(read_header(path).get("Modality", "")))


def _series_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def convert_case(case_id: str, image: str, mask: str, roi: str | None = None) -> tuple[str, str, dict[str, str]]:
    """One case's DICOM image and mask as cached NRRD files (other formats are returned as they are).

    Parameters
    ----------
    case_id : str
        The case, for the messages.
    image : str
        An image file, or a DICOM series folder.
    mask : str
        A mask file SimpleITK reads, an RTSTRUCT or a DICOM SEG.
    roi : str, optional
        The RTSTRUCT's ROI (a name or a regular expression) or the SEG's segment (label or number); needed
        when the file holds more than one.

    Returns
    -------
    (str, str, dict)
        The image and mask paths to use, and the ``dicom_*`` provenance (empty when nothing was DICOM).

    Raises
    ------
    CaseError
        Naming the case and the file: an unreadable series, an RTSTRUCT or SEG without its series as the
        image, a mismatched reference, an unknown or ambiguous ROI.

    Examples
    --------
    >>> convert_case("c1", "c1_image.nrrd", "c1_mask.nrrd")
    ('c1_image.nrrd', 'c1_mask.nrrd', {})
    """
    kind = mask_kind(mask) if Path(mask).is_file() else None
    is_series = Path(image).is_dir()
    if kind and not is_series:
        raise CaseError(f"case {case_id!r}: mask {mask} is an {kind.upper()}; the image must be the DICOM series "
                        f"folder it refers to, got {image}")
    if not is_series:
        return image, mask, {}
    files = _series_files(Path(image))
    read: dict[str, Any] = {}

    def series():
        if not read:
            read["image"], read["info"] = read_series(image)
        return read["image"], read["info"]

    def make_image():
        volume, info = series()
        return volume, {"image": image, "study_uid": info.study_uid, "series_uid": info.series_uid,
                        "frame_of_reference_uid": info.frame_of_reference_uid, "modality": info.modality}

    try:
        image_path, provenance = cached_volume(content_digest(files, kind="series"), make_image)
        out = {DICOM_PREFIX + "image": image, DICOM_PREFIX + "study_uid": provenance["study_uid"],
               DICOM_PREFIX + "series_uid": provenance["series_uid"]}
        if not kind:
            return str(image_path), mask, out
        rasterise = rasterise_rtstruct if kind == "rtstruct" else read_seg_mask

        def make_mask():
            volume, found = rasterise(mask, *series(), roi)
            return volume, {**found, "mask": mask, "series_uid": provenance["series_uid"]}

        mask_path, mask_provenance = cached_volume(content_digest([*files, mask], kind=kind, roi=roi), make_mask)
    except CaseError as exc:
        raise CaseError(f"case {case_id!r}: {exc}") from None
    out.update({DICOM_PREFIX + "mask": mask, DICOM_PREFIX + "mask_uid": mask_provenance["sop_instance_uid"],
                DICOM_PREFIX + "roi": mask_provenance["roi_name"]})
    return str(image_path), str(mask_path), out


def _roi_text(cell: Any) -> str | None:
    """A ``roi`` cell as text: pandas reads a column of segment numbers as numbers (1.0 when a cell is empty)."""
    if cell is None or (not isinstance(cell, str) and pd.isna(cell)):
        return None
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip() or None


def convert_cases(cases: pd.DataFrame, *, progress: bool | None = None) -> pd.DataFrame:
    """A cases table with its DICOM rows converted (:func:`convert_case`) and the ``dicom_*`` columns added.

    Parameters
    ----------
    cases : DataFrame
        A cases table with absolute paths; an optional ``roi`` column.
    progress : bool, optional
        A progress bar over the DICOM cases (None: on a terminal).

    Returns
    -------
    DataFrame
        ``cases`` itself when no row is DICOM; else a copy with the converted paths and the :data:`DICOM_COLUMNS`
        (empty text on rows that were not DICOM).

    Raises
    ------
    CaseError
        See :func:`convert_case`.
    """
    dicom = [Path(p).is_dir() or mask_kind(m) is not None for p, m in zip(cases[schema.IMAGE], cases[schema.MASK])]
    if not any(dicom):
        return cases
    out = cases.copy()
    for col in DICOM_COLUMNS:
        out[col] = ""
    rois = cases[schema.ROI] if schema.ROI in cases.columns else pd.Series([None] * len(cases), index=cases.index)
    rows = [i for i, is_dicom in zip(cases.index, dicom) if is_dicom]
    for i in progress_bar(rows, progress=progress, desc="DICOM", unit="case"):
        roi = _roi_text(rois[i])
        image, mask, provenance = convert_case(cases.at[i, schema.CASE_ID], cases.at[i, schema.IMAGE],
                                               cases.at[i, schema.MASK], roi)
        out.at[i, schema.IMAGE], out.at[i, schema.MASK] = image, mask
        for col, value in provenance.items():
            out.at[i, col] = value
    return out


def dicom_sources(cases: pd.DataFrame) -> dict[str, Any]:
    """The source UIDs of a converted cases table, for a manifest: ``{"dicom_sources": [...]}``, or ``{}``.

    Parameters
    ----------
    cases : DataFrame
        A cases table from :func:`convert_cases`.

    Returns
    -------
    dict
        One record per DICOM case: ``case_id`` and the :data:`DICOM_COLUMNS` without their prefix.

    Examples
    --------
    >>> dicom_sources(pd.DataFrame({"case_id": ["c1"], "image": ["c1.nrrd"]}))
    {}
    """
    if DICOM_COLUMNS[0] not in cases.columns:
        return {}
    rows = cases[cases[DICOM_COLUMNS[0]].astype(str).str.len() > 0]
    return {"dicom_sources": [{schema.CASE_ID: row[schema.CASE_ID],
                               **{col.removeprefix(DICOM_PREFIX): row[col] for col in DICOM_COLUMNS}}
                              for row in rows.to_dict("records")]}
