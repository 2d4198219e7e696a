"""Every DICOM file shipped with pydicom (and pydicom-data, when installed) reads as a series or is refused
with a named reason: a CaseError naming the file, never a traceback of another kind."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

from harmony.core.dicom.series import read_series
from harmony.core.errors import CaseError


def _listing() -> list[Path]:
    folders = [Path(importlib.util.find_spec("pydicom").origin).parent / "data" / "test_files"]
    store = importlib.util.find_spec("data_store")  # pydicom-data's package
    if store is not None:
        folders.append(Path(store.origin).parent / "data")
    return sorted(p for folder in folders for p in folder.rglob("*.dcm"))


FILES = _listing()


def test_the_listing_is_not_empty():
    assert len(FILES) > 50


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_reads_or_is_refused_with_a_named_reason(path, tmp_path):
    shutil.copy(path, tmp_path / path.name)
    try:
        image, info = read_series(tmp_path)
    except CaseError as exc:
        message = str(exc)
        assert "\n" not in message and str(tmp_path) in message
        reasons = ("cannot read as DICOM", "no DICOM image file", "multi-frame", "samples per pixel",
                   "not a cross-sectional image", "pixel data cannot be decoded", "malformed patient geometry")
        assert any(reason in message for reason in reasons), message
    else:
        assert isinstance(image, sitk.Image) and image.GetSize()[2] == 1 and info.sop_instance_uids
