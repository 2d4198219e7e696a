"""User cases: the CSV manifest (``case_id,image,mask,site`` plus covariates), checked on load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.dicom.convert import convert_case, convert_cases
from harmony.core.errors import CaseError
from harmony.core.files import read_table, write_text
from harmony.core.images import read_image

__all__ = ["REQUIRED_COLUMNS", "MAX_LABELS", "load_cases", "check_geometry", "check_case", "check_label_map",
           "write_cases", "load_case_images", "read_cases"]

#: The columns every cases CSV has; any further column is a covariate (or a ``truth_*`` value).
REQUIRED_COLUMNS = (schema.CASE_ID, schema.IMAGE, schema.MASK, schema.SITE)


def load_cases(csv_path: str | os.PathLike, *, label: int = 1, tolerance: float = 1e-4,
               check_files: bool = True) -> pd.DataFrame:
    """Read a cases CSV, resolve its paths against the CSV's folder and check every case.

    Parameters
    ----------
    csv_path : str or os.PathLike
        A CSV with the columns ``case_id, image, mask, site`` and any covariates; ``image`` and ``mask``
        are paths relative to the CSV's folder (or absolute) to anything SimpleITK reads.
    label : int, default 1
        The label every mask must hold.
    tolerance : float, default 1e-4
        Largest difference allowed between the image's and the mask's spacing, origin and direction.
    check_files : bool, default True
        Check every case's files (:func:`check_case`); False only reads the table (e.g. for harmonizing a
        features table whose images are elsewhere).

    Returns
    -------
    DataFrame
        The cases table (:data:`harmony.core.schema.CASES`) with absolute image and mask paths; the
        required columns are read as text ("NA" is an id), the covariates with pandas' types.

    Raises
    ------
    CaseError
        Naming the case and the file: missing or unreadable CSV or file, no rows, missing column, empty cell,
        duplicate ``case_id``, image/mask geometry mismatch (size exactly; spacing, origin and direction
        within ``tolerance``), empty mask, mask without ``label``.

    Examples
    --------
    >>> import tempfile
    >>> from harmony.phantoms import write_ibsi_phantom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = write_ibsi_phantom(folder)
    ...     cases = load_cases(Path(folder) / "cases.csv")
    ...     print(cases[["case_id", "site"]].to_dict("records"), Path(cases["mask"][0]).name)
    [{'case_id': 'ibsi_phantom', 'site': 'ibsi'}] ibsi_phantom_mask.nrrd
    >>> load_cases("no/such/cases.csv")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: no/such/cases.csv: cases file not found
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
    if raw.empty:
        raise CaseError(f"{csv_path}: no cases (the file has a header and no rows)")
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
    if check_files:  # DICOM series, RTSTRUCT and SEG become cached volumes; the dicom_* columns say from what
        cases = convert_cases(cases)
    labels = _case_labels(cases, csv_path, label)
    if check_files:
        for row, case_label in zip(cases.itertuples(index=False), labels):
            row = row._asdict()
            check_case(row[schema.CASE_ID], row[schema.IMAGE], row[schema.MASK], label=case_label,
                       tolerance=tolerance)
    return schema.CASES.validate(cases, source=str(csv_path))


def _case_labels(cases: pd.DataFrame, csv_path: Path, label: int) -> list[int]:
    """Each case's mask label: its ``label`` cell when the CSV has that column and the cell is filled, else
    ``label``."""
    if schema.LABEL not in cases.columns:
        return [label] * len(cases)
    labels = []
    for case_id, cell in zip(cases[schema.CASE_ID], cases[schema.LABEL]):
        if pd.isna(cell) or str(cell).strip() == "":
            labels.append(label)
            continue
        try:
            value = float(cell)
        except ValueError:
            value = float("nan")
        if not (value.is_integer() and value >= 1):
            raise CaseError(f"{csv_path}: case {case_id!r}: column 'label' must be an integer >= 1, got {cell!r}")
        labels.append(int(value))
    return labels


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
    """Raise CaseError when the mask's grid differs from the image's (headers or images accepted).

    Parameters
    ----------
    image, mask : SimpleITK.Image or SimpleITK.ImageFileReader
        The image and the mask, or their headers (readers after ``ReadImageInformation``).
    case_id : str
        The case, for the message.
    mask_path : str
        The mask's file, for the message.
    tolerance : float, default 1e-4
        Largest difference allowed in spacing, origin and direction; the sizes must be equal.

    Raises
    ------
    CaseError
        The sizes differ, or the spacing, origin or direction differ by more than ``tolerance``.

    Examples
    --------
    >>> image, mask = sitk.Image(4, 4, 4, sitk.sitkFloat32), sitk.Image(4, 4, 4, sitk.sitkUInt8)
    >>> check_geometry(image, mask, case_id="c1", mask_path="c1_mask.nrrd")
    >>> mask.SetSpacing((1.0, 1.0, 2.0))
    >>> check_geometry(image, mask, case_id="c1", mask_path="c1_mask.nrrd")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: case 'c1': mask c1_mask.nrrd has spacing (1.0, 1.0, 2.0), the image has ...
    """
    if tuple(image.GetSize()) != tuple(mask.GetSize()):
        raise CaseError(f"case {case_id!r}: mask {mask_path} has size {tuple(mask.GetSize())}, "
                        f"the image has {tuple(image.GetSize())}")
    for name in ("Spacing", "Origin", "Direction"):
        a = np.asarray(getattr(image, f"Get{name}")())
        b = np.asarray(getattr(mask, f"Get{name}")())
        if a.shape != b.shape or np.max(np.abs(a - b)) > tolerance:
            raise CaseError(f"case {case_id!r}: mask {mask_path} has {name.lower()} {tuple(b.round(6).tolist())}, "
                            f"the image has {tuple(a.round(6).tolist())} (tolerance {tolerance})")


def check_case(case_id: str, image_path: str, mask_path: str, *, label: int = 1, tolerance: float = 1e-4) -> None:
    """Check one case's files without loading the image voxels (the mask is read to count its label).

    Parameters
    ----------
    case_id : str
        The case, for the messages.
    image_path, mask_path : str
        Its image and mask files.
    label : int, default 1
        The label the mask must hold.
    tolerance : float, default 1e-4
        See :func:`check_geometry`.

    Raises
    ------
    CaseError
        A file is missing or unreadable, the grids differ, the mask is not a scalar label map, is empty
        or does not hold ``label``.

    Examples
    --------
    >>> import tempfile
    >>> from harmony.core.images import write_case
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     image_path, mask_path = write_case(*ibsi_digital_phantom(), folder, "c1")
    ...     check_case("c1", str(image_path), str(mask_path))
    ...     check_case("c1", str(image_path), str(mask_path), label=2)
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: case 'c1': mask ... has no voxel with label 2 (labels present: [1]); set ...
    """
    image_header = _header(image_path, "image", case_id)
    mask_header = _header(mask_path, "mask", case_id)
    check_geometry(image_header, mask_header, case_id=case_id, mask_path=mask_path, tolerance=tolerance)
    mask = read_image(mask_path, "mask", case_id)
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(f"case {case_id!r}: mask {mask_path} has {mask.GetNumberOfComponentsPerPixel()} "
                        "components per voxel, expected a scalar label map")
    check_label_map(sitk.GetArrayViewFromImage(mask), case_id=case_id, mask_path=mask_path, label=label)


#: More distinct values than this in a mask mean it is an image, not a label map (atlases hold ~200 labels).
MAX_LABELS = 256


def check_label_map(voxels: np.ndarray, *, case_id: str, mask_path: str, label: int) -> None:
    """Raise CaseError unless ``voxels`` are a label map holding ``label``.

    A label map holds non-negative integers (any pixel type: a float mask of 0.0 and 1.0 is fine) and at
    most :data:`MAX_LABELS` distinct values. An image given as the mask breaks one of these rules (a CT has
    negative values, an MR thousands of values or fractions) and is refused before anything runs.

    Parameters
    ----------
    voxels : numpy.ndarray
        The mask's voxels.
    case_id : str
        The case, for the message.
    mask_path : str
        The mask's file, for the message.
    label : int
        The label the mask must hold.

    Raises
    ------
    CaseError
        The mask holds fractions, negative values or too many values ("did you swap image and mask?"), is
        empty, or does not hold ``label`` (the labels present and the options that set it are named).

    Examples
    --------
    >>> check_label_map(np.array([0, 1, 1, 2]), case_id="c1", mask_path="c1_mask.nrrd", label=2)
    >>> check_label_map(np.array([-1000.0, 40.5, 60.0]), case_id="c1", mask_path="c1_mask.nrrd", label=1)
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: case 'c1': mask c1_mask.nrrd holds ... did you swap image and mask?
    """
    where = f"case {case_id!r}: mask {mask_path}"
    swapped = "not a label map: did you swap image and mask?"
    if np.issubdtype(voxels.dtype, np.floating):
        finite = np.isfinite(voxels)
        if not finite.all():
            raise CaseError(f"{where} holds NaN or infinite values; {swapped}")
        fraction = voxels[voxels != np.round(voxels)]
        if fraction.size:
            raise CaseError(f"{where} holds non-integer values (e.g. {float(fraction.flat[0]):g}); {swapped}")
    if voxels.size and voxels.min() < 0:
        raise CaseError(f"{where} holds negative values (minimum {voxels.min():g}); {swapped}")
    present = np.unique(voxels)
    present = present[present != 0]
    if present.size > MAX_LABELS:
        raise CaseError(f"{where} holds {present.size} distinct values, more than {MAX_LABELS} labels; {swapped}")
    if not present.size:
        raise CaseError(f"{where} is empty (no non-zero voxel)")
    if label not in present:
        shown = [int(v) for v in present[:10]]
        raise CaseError(f"{where} has no voxel with label {label} (labels present: {shown}); set the label with "
                        "--label, [extraction.settings.setting] label, or a 'label' column in the cases CSV")


def write_cases(cases: pd.DataFrame, csv_path: str | os.PathLike) -> Path:
    """Write a cases table as CSV with image and mask paths relative to the CSV's folder.

    The file is what :func:`load_cases` reads back (the cases stay findable when the folder moves).

    Parameters
    ----------
    cases : DataFrame
        A cases table (:data:`harmony.core.schema.CASES`).
    csv_path : str or os.PathLike
        The CSV to write, atomically.

    Returns
    -------
    pathlib.Path
        ``csv_path``.

    Raises
    ------
    SchemaError
        ``cases`` does not follow :data:`harmony.core.schema.CASES`.

    Examples
    --------
    >>> import tempfile
    >>> cases = pd.DataFrame({"case_id": ["c1"], "site": ["a"], "image": ["/data/c1.nrrd"],
    ...                       "mask": ["/data/c1_mask.nrrd"], "age": [61]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     print(write_cases(cases, Path(folder) / "cases.csv").read_text().splitlines()[0])
    case_id,site,image,mask,age
    """
    csv_path = Path(csv_path)
    checked = schema.CASES.validate(cases)
    base = csv_path.resolve().parent
    for col in (schema.IMAGE, schema.MASK):
        checked[col] = [os.path.relpath(Path(p).resolve(), base) for p in checked[col]]
    return write_text(csv_path, checked.to_csv(index=False))


def load_case_images(case: pd.Series | dict) -> tuple[sitk.Image, sitk.Image]:
    """Read the image and mask of one row of a cases table.

    Parameters
    ----------
    case : pandas.Series or dict
        A row of a cases table: ``case_id``, ``image`` and ``mask`` at least (a DICOM series folder and an
        RTSTRUCT or SEG with ``roi`` too, converted through the cache as :func:`load_cases` does).

    Returns
    -------
    (SimpleITK.Image, SimpleITK.Image)
        The image and the mask.

    Raises
    ------
    CaseError
        A file is missing or unreadable.

    Examples
    --------
    >>> load_case_images({"case_id": "c1", "image": "no/such/c1.nrrd", "mask": "no/such/c1_mask.nrrd"})
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: case 'c1': image file not found: no/such/c1.nrrd
    """
    case_id = case[schema.CASE_ID]
    roi = case.get(schema.ROI)
    image, mask, _ = convert_case(case_id, case[schema.IMAGE], case[schema.MASK],  # a row not from load_cases
                                  str(roi) if isinstance(roi, str) and roi.strip() else None)
    return read_image(image, "image", case_id), read_image(mask, "mask", case_id)


def read_cases(path: str | os.PathLike) -> pd.DataFrame:
    """A cases table for harmonization: a cases CSV (image files not checked) or a cases Parquet file.

    Parameters
    ----------
    path : str or path-like
        A ``.csv`` file is read as a cases CSV (:func:`~harmony.core.cases.load_cases`); any other file as a
        table of :data:`~harmony.core.schema.CASES`.

    Returns
    -------
    DataFrame
        The cases table, validated against :data:`~harmony.core.schema.CASES`.

    Raises
    ------
    HarmonyError
        When the file is missing or not a valid cases table (the subclass says which).
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_cases(path, check_files=False)
    return read_table(path, schema.CASES)
