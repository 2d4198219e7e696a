"""`harmony cases scan DIR`: a DICOM tree (headers only) paired into a cases table, and every file left out named.

Each image series (one folder, one SeriesInstanceUID) is paired with the RTSTRUCTs and SEGs that reference
it (by SeriesInstanceUID; by FrameOfReferenceUID when they name no series and one series has it). Each ROI
of a structure set (or segment of a SEG) selected by ``roi`` gives one row per (patient, ROI): ``case_id``
(``<PatientID>_<ROI>``, made safe for file names), ``patient_id``, ``site`` (the ``site_tags`` values joined
by " "), ``image`` (the series folder), ``mask`` (the RTSTRUCT or SEG), ``roi`` (the exact name) and the
covariates read from the series' tags (PatientAge "063Y" -> 63.0 years; numeric tags as numbers). A
(patient, ROI) found in more than one place is ambiguous and left out. Every file that is not used is a row
of the problems table: unreadable, not used (another modality), unpaired or ambiguous, with the reason.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.dicom.rtstruct import roi_names
from harmony.core.dicom.seg import segment_labels
from harmony.core.dicom.series import NON_IMAGE_MODALITIES, read_header
from harmony.core.errors import CaseError, HarmonyError
from harmony.core.files import write_text
from harmony.core.progress import progress_bar

__all__ = ["DETAIL", "FILE", "PROBLEM", "ScanResult", "parse_age", "scan_dicom", "write_scan"]

#: Columns of the problems table.
FILE, PROBLEM, DETAIL = "file", "problem", "detail"
_AGE_UNITS = {"Y": 1.0, "M": 12.0, "W": 365.25 / 7, "D": 365.25}


@dataclass
class ScanResult:
    """What a scan found: the cases (one row per patient and ROI) and the problems (one row per file left out).

    Parameters
    ----------
    cases : DataFrame
        ``case_id, patient_id, site, image, mask, roi`` and the covariates; absolute paths.
    problems : DataFrame
        ``file, problem, detail``; ``problem`` is one of ``unreadable``, ``not used``, ``unpaired``,
        ``ambiguous``.
    """

    cases: pd.DataFrame
    problems: pd.DataFrame


def parse_age(text: str) -> float | None:
    """A DICOM age string (``nnnY``, ``nnnM``, ``nnnW``, ``nnnD``) in years.

    Parameters
    ----------
    text : str
        PatientAge.

    Returns
    -------
    float or None
        None when ``text`` is empty or not an age string.

    Examples
    --------
    >>> parse_age("063Y"), parse_age("018M"), parse_age("")
    (63.0, 1.5, None)
    """
    match = re.fullmatch(r"\s*(\d{1,3})\s*([YMWD])\s*", str(text or ""))
    return float(match[1]) / _AGE_UNITS[match[2]] if match else None


def _tag_value(ds: Any, keyword: str) -> Any:
    """A header value as a number where it is one (PatientAge in years), else as text (None when absent)."""
    value = ds.get(keyword, None)
    if value is None or str(value).strip() == "":
        return None
    if keyword == "PatientAge":
        return parse_age(str(value))
    if isinstance(value, (int, float)):
        return float(value)
    return str(value).strip()


def _check_keywords(keywords: Sequence[str], option: str) -> None:
    from pydicom.datadict import tag_for_keyword

    unknown = [k for k in keywords if tag_for_keyword(k) is None]
    if unknown:
        raise HarmonyError(f"{option} {','.join(keywords)}: {unknown} are not DICOM keywords (e.g. Manufacturer, "
                           "ManufacturerModelName, PatientAge, PatientSex)")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _referenced_series(ds: Any) -> set[str]:
    uids = set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            uids |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])
                     if "SeriesInstanceUID" in s}
    uids |= {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
    return uids


def _frames_of_reference(ds: Any) -> set[str]:
    uids = {str(ds.FrameOfReferenceUID)} if "FrameOfReferenceUID" in ds else set()
    return uids | {str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])
                   if "FrameOfReferenceUID" in f}


def scan_dicom(root: str | os.PathLike, *, roi: str | None = None, site_tags: Sequence[str] = ("Manufacturer",),
               covariates: Sequence[str] = (), progress: bool | None = None) -> ScanResult:
    """Walk a DICOM tree, reading headers only, and pair its image series with their RTSTRUCTs and SEGs.

    Parameters
    ----------
    root : str or os.PathLike
        The folder to walk (every file under it is looked at).
    roi : str, optional
        Keep only the ROIs (segment labels) equal to it or fully matching it as a case-insensitive regular
        expression; all of them when None.
    site_tags : sequence of str, default ("Manufacturer",)
        DICOM keywords whose values (of the image series) make the site.
    covariates : sequence of str, default ()
        DICOM keywords read as covariate columns (named by the keyword).
    progress : bool, optional
        A progress bar over the files (None: on a terminal).

    Returns
    -------
    ScanResult

    Raises
    ------
    HarmonyError
        ``root`` is not a folder, holds no DICOM file, ``roi`` is not a regular expression, or a keyword is
        not a DICOM keyword.

    Examples
    --------
    >>> scan_dicom("no/such/folder")
    Traceback (most recent call last):
    ...
    harmony.core.errors.HarmonyError: no/such/folder: DICOM folder not found
    """
    root = Path(root)
    if not root.is_dir():
        raise HarmonyError(f"{root}: DICOM folder not found")
    _check_keywords(list(site_tags), "--site-tag")
    _check_keywords(list(covariates), "--covariates")
    if not site_tags:
        raise HarmonyError("--site-tag: give at least one DICOM keyword (e.g. Manufacturer)")
    try:
        pattern = re.compile(roi, re.IGNORECASE) if roi else None
    except re.error as exc:
        raise HarmonyError(f"--roi {roi!r}: not a regular expression ({exc})") from None
    problems: list[dict[str, str]] = []
    series: dict[str, dict[str, Any]] = {}
    masks: list[tuple[Path, Any, str]] = []
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    n_dicom = 0
    for path in progress_bar(files, progress=progress, desc="headers", unit="file"):
        try:
            ds = read_header(path)
        except CaseError as exc:
            problems.append({FILE: str(path), PROBLEM: "unreadable", DETAIL: str(exc).removeprefix(f"{path}: ")})
            continue
        n_dicom += 1
        modality = str(ds.get("Modality", "")).upper()
        if modality in ("RTSTRUCT", "SEG"):
            masks.append((path, ds, modality))
        elif modality in NON_IMAGE_MODALITIES or "Rows" not in ds or "ImagePositionPatient" not in ds:
            problems.append({FILE: str(path), PROBLEM: "not used",
                             DETAIL: f"Modality {modality or '?'} ({ds.get('SOPClassUID', '?')}): not an image slice, "
                                     "RTSTRUCT or SEG"})
        else:
            entry = series.setdefault(str(ds.get("SeriesInstanceUID", "")), {"folders": set(), "first": ds,
                                                                             "files": []})
            entry["folders"].add(path.parent)
            entry["files"].append(path)
    if not n_dicom:
        raise HarmonyError(f"{root}: no DICOM file under it ({len(files)} other files)")
    usable = _usable_series(series, problems)
    rows = _pair(masks, usable, pattern, problems)
    cases = _cases(rows, usable, list(site_tags), list(covariates), problems)
    for uid, entry in usable.items():
        if not any(r["series"] == uid for r in rows):
            problems.append({FILE: str(next(iter(entry["folders"]))), PROBLEM: "unpaired",
                             DETAIL: f"image series {uid} ({len(entry['files'])} slices) has no RTSTRUCT or SEG"
                                     + (f" with an ROI matching {roi!r}" if roi else "")})
    return ScanResult(cases, pd.DataFrame(problems, columns=[FILE, PROBLEM, DETAIL]))


def _usable_series(series: dict[str, dict[str, Any]], problems: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """The series alone in one folder (the form the cases CSV's ``image`` column reads)."""
    per_folder = defaultdict(set)
    for uid, entry in series.items():
        for folder in entry["folders"]:
            per_folder[folder].add(uid)
    usable = {}
    for uid, entry in series.items():
        if len(entry["folders"]) > 1:
            problems.append({FILE: str(min(entry["folders"])), PROBLEM: "ambiguous",
                             DETAIL: f"image series {uid} is spread over {len(entry['folders'])} folders"})
        elif len(per_folder[next(iter(entry["folders"]))]) > 1:
            problems.append({FILE: str(next(iter(entry["folders"]))), PROBLEM: "ambiguous",
                             DETAIL: f"image series {uid} shares its folder with another image series; give each "
                                     "series its own folder"})
        else:
            usable[uid] = entry
    return usable


def _pair(masks: list[tuple[Path, Any, str]], usable: dict[str, dict[str, Any]], pattern: re.Pattern | None,
          problems: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per (mask file, selected ROI) whose series was found."""
    by_frame = defaultdict(list)
    for uid, entry in usable.items():
        by_frame[str(entry["first"].get("FrameOfReferenceUID", ""))].append(uid)
    rows = []
    for path, ds, modality in masks:
        referenced = _referenced_series(ds) & set(usable)
        if not referenced and not _referenced_series(ds):
            referenced = {uid for frame in _frames_of_reference(ds) for uid in by_frame.get(frame, [])}
        if len(referenced) != 1:
            named = sorted(_referenced_series(ds)) or sorted(_frames_of_reference(ds))
            problems.append({FILE: str(path), PROBLEM: "unpaired" if not referenced else "ambiguous",
                             DETAIL: f"{modality} refers to {named or 'no series'}: "
                                     + ("no usable image series under the folder has it" if not referenced else
                                        f"{len(referenced)} series match")})
            continue
        names = list((roi_names(ds) if modality == "RTSTRUCT" else segment_labels(ds)).values())
        chosen = [n for n in names if pattern is None or pattern.fullmatch(n) or n == pattern.pattern]
        if not chosen:
            problems.append({FILE: str(path), PROBLEM: "unpaired",
                             DETAIL: f"no ROI matches --roi {pattern.pattern!r}; the ROIs are {names}"})
        rows += [{"series": next(iter(referenced)), "mask": path, "roi": n} for n in chosen]
    return rows


def _cases(rows: list[dict[str, Any]], usable: dict[str, dict[str, Any]], site_tags: list[str],
           covariates: list[str], problems: list[dict[str, str]]) -> pd.DataFrame:
    records, seen = [], defaultdict(list)
    for row in rows:
        first = usable[row["series"]]["first"]
        patient = str(first.get("PatientID", "")).strip()
        seen[(patient, row["roi"])].append(row)
    ids: set[str] = set()
    for (patient, roi), found in seen.items():
        if len(found) > 1:
            for row in found:
                problems.append({FILE: str(row["mask"]), PROBLEM: "ambiguous",
                                 DETAIL: f"patient {patient!r} has ROI {roi!r} in {len(found)} places; keep one"})
            continue
        row = found[0]
        first, folder = usable[row["series"]]["first"], next(iter(usable[row["series"]]["folders"]))
        site_values = [_tag_value(first, tag) for tag in site_tags]
        if not patient or any(v is None for v in site_values):
            missing = ["PatientID"] * (not patient) + [t for t, v in zip(site_tags, site_values) if v is None]
            problems.append({FILE: str(folder), PROBLEM: "unpaired",
                             DETAIL: f"image series {row['series']} has no {', '.join(missing)}"})
            continue
        case_id = base = _safe(f"{patient}_{roi}")
        n = 1
        while case_id in ids:
            n += 1
            case_id = f"{base}-{n}"
        ids.add(case_id)
        records.append({schema.CASE_ID: case_id, schema.PATIENT_ID: patient,
                        schema.SITE: " ".join(str(v) for v in site_values), schema.IMAGE: str(folder),
                        schema.MASK: str(row["mask"]), schema.ROI: roi,
                        **{tag: _tag_value(first, tag) for tag in covariates}})
    columns = [schema.CASE_ID, schema.PATIENT_ID, schema.SITE, schema.IMAGE, schema.MASK, schema.ROI, *covariates]
    return pd.DataFrame(records, columns=columns)


def write_scan(result: ScanResult, csv_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the cases CSV (paths relative to it) and the problems table beside it (``<stem>_problems.csv``).

    Parameters
    ----------
    result : ScanResult
        :func:`scan_dicom`.
    csv_path : str or os.PathLike
        The cases CSV.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The cases CSV and the problems CSV (written even when empty, so an old one never lingers).
    """
    csv_path = Path(csv_path)
    problems_path = csv_path.with_name(f"{csv_path.stem}_problems.csv")
    cases = result.cases.copy()
    base = csv_path.resolve().parent
    for col in (schema.IMAGE, schema.MASK):  # relative to the CSV, as load_cases reads them
        cases[col] = [os.path.relpath(Path(p).resolve(), base) for p in cases[col]]
    write_text(csv_path, cases.to_csv(index=False))
    write_text(problems_path, result.problems.to_csv(index=False))
    return csv_path, problems_path
