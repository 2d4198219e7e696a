"""User cases: the CSV manifest (``case_id,image,mask,site`` plus covariates), checked on load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.errors import CaseError
from harmony.core.files import write_text
from harmony.core.images import read_image

REQUIRED_COLUMNS = (schema.CASE_ID, schema.IMAGE, schema.MASK, schema.SITE)


def load_cases(csv_path: str | os.PathLike, *, label: int = 1, tolerance: float = 1e-4,
               check_files: bool = True) -> pd.DataFrame:
    """Read a cases CSV, resolve its paths against the CSV's folder and check every case.

    Each failure raises :class:`~harmony.core.errors.CaseError` naming the case and the file: missing or
    unreadable file, image/mask geometry mismatch (size exactly; spacing, origin and direction within
    ``tolerance``), empty mask, mask without ``label``, duplicate ``case_id``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CaseError(f"{csv_path}: cases file not found")
    try:
        # covariates with pandas' numbers and missing values; the required columns as written ("NA" is an id)
        raw = pd.read_csv(csv_path, dtype={c: "str" for c in REQUIRED_COLUMNS})
        written = pd.read_csv(csv_path, dtype="str", keep_default_na=False, usecols=lambda c: c in REQUIRED_COLUMNS)
        raw[written.columns] = written
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CaseError(f"{csv_path}: cannot read the cases CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise CaseError(f"{csv_path}: missing column(s) {missing}; it has {list(raw.columns)}")
    for col in REQUIRED_COLUMNS:
        empty = raw[col].str.strip() == ""
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            who = raw[schema.CASE_ID].iloc[row] or f"row {row + 2}"
            raise CaseError(f"{csv_path}: case {who!r}: column {col!r} is empty")
    dup = raw[schema.CASE_ID].duplicated(keep=False)
    if dup.any():
        ids = sorted(set(raw.loc[dup, schema.CASE_ID]))
        raise CaseError(f"{csv_path}: duplicate case_id {ids[0]!r} (duplicated ids: {ids})")
    base = csv_path.resolve().parent
    cases = raw.copy()
    for col in (schema.IMAGE, schema.MASK):
        cases[col] = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in raw[col]]
    if check_files:
        for row in cases.itertuples(index=False):
            row = row._asdict()
            check_case(row[schema.CASE_ID], row[schema.IMAGE], row[schema.MASK], label=label, tolerance=tolerance)
    return schema.CASES.validate(cases, source=str(csv_path))


def _header(path: str, what: str, case_id: str) -> sitk.ImageFileReader:
    if not Path(path).is_file():
        raise CaseError(f"case {case_id!r}: {what} file not found: {path}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"case {case_id!r}: {what} file is unreadable: {path} ({first})") from None
    return reader


def check_geometry(image, mask, *, case_id: str, mask_path: str, tolerance: float = 1e-4) -> None:
    """Raise CaseError when the mask's grid differs from the image's (headers or images accepted)."""
    if tuple(image.GetSize()) != tuple(mask.GetSize()):
        raise CaseError(f"case {case_id!r}: mask {mask_path} has size {tuple(mask.GetSize())}, "
                        f"the image has {tuple(image.GetSize())}")
    for name in ("Spacing", "Origin", "Direction"):
        a = np.asarray(getattr(image, f"Get{name}")())
        b = np.asarray(getattr(mask, f"Get{name}")())
        if a.shape != b.shape or np.max(np.abs(a - b)) > tolerance:
            raise CaseError(f"case {case_id!r}: mask {mask_path} has {name.lower()} {tuple(b.round(6))}, "
                            f"the image has {tuple(a.round(6))} (tolerance {tolerance})")


def check_case(case_id: str, image_path: str, mask_path: str, *, label: int = 1, tolerance: float = 1e-4) -> None:
    """Check one case's files without loading the image voxels (the mask is read to count its label)."""
    image_header = _header(image_path, "image", case_id)
    mask_header = _header(mask_path, "mask", case_id)
    check_geometry(image_header, mask_header, case_id=case_id, mask_path=mask_path, tolerance=tolerance)
    mask = read_image(mask_path, "mask", case_id)
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(f"case {case_id!r}: mask {mask_path} has {mask.GetNumberOfComponentsPerPixel()} "
                        "components per voxel, expected a scalar label map")
    voxels = sitk.GetArrayViewFromImage(mask)
    if not np.any(voxels):
        raise CaseError(f"case {case_id!r}: mask {mask_path} is empty (no non-zero voxel)")
    if not np.any(voxels == label):
        present = np.unique(voxels[voxels != 0])[:10].tolist()
        raise CaseError(f"case {case_id!r}: mask {mask_path} has no voxel with label {label} "
                        f"(labels present: {present})")


def write_cases(cases: pd.DataFrame, csv_path: str | os.PathLike) -> Path:
    """Write a cases table as CSV with image and mask paths relative to the CSV's folder."""
    csv_path = Path(csv_path)
    checked = schema.CASES.validate(cases)
    base = csv_path.resolve().parent
    for col in (schema.IMAGE, schema.MASK):
        checked[col] = [os.path.relpath(Path(p).resolve(), base) for p in checked[col]]
    return write_text(csv_path, checked.to_csv(index=False))


def load_case_images(case: pd.Series | dict) -> tuple[sitk.Image, sitk.Image]:
    """Read the image and mask of one row of a cases table."""
    case_id = case[schema.CASE_ID]
    return (read_image(case[schema.IMAGE], "image", case_id), read_image(case[schema.MASK], "mask", case_id))
