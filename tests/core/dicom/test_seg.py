"""DICOM SEG (written by highdicom) read back onto the series' grid: binary and fractional, by label or number."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from harmony.core.dicom.seg import read_seg_mask
from harmony.core.dicom.series import read_series
from harmony.core.errors import CaseError
from tests.core.dicom.writers import write_seg


@pytest.mark.parametrize("segment", ["tumour", "1", "TUM.*", None])
def test_seg_round_trips_exactly(study, segment):
    root, written = study
    image, info = read_series(root / "LUNG-003" / "study" / "CT")
    mask, provenance = read_seg_mask(root / "LUNG-003" / "study" / "SEG" / "seg.dcm", image, info, segment)
    assert np.array_equal(sitk.GetArrayFromImage(mask).astype(bool), written["LUNG-003"]["lesion"])
    assert provenance == {"sop_instance_uid": written["LUNG-003"]["seg_uid"], "roi_name": "tumour"}


def test_fractional_seg_is_thresholded_at_half_and_segments_are_kept_apart(study, tmp_path):
    root, written = study
    series = written["LUNG-004"]
    lesion = series["lesion"].astype(np.float32)
    fractions = np.where(lesion > 0, 0.8, 0.0).astype(np.float32)
    fractions[lesion == 0] = 0.3  # below half: outside
    other = np.zeros_like(lesion)
    other[0, :4, :4] = 1.0
    write_seg(tmp_path / "seg.dcm", series, {"tumour": fractions, "other": other}, fractional=True)
    image, info = read_series(root / "LUNG-004" / "study" / "CT")
    mask, _ = read_seg_mask(tmp_path / "seg.dcm", image, info, "tumour")
    assert np.array_equal(sitk.GetArrayFromImage(mask).astype(bool), series["lesion"])
    mask, _ = read_seg_mask(tmp_path / "seg.dcm", image, info, "2")
    assert sitk.GetArrayFromImage(mask).sum() == 16


def test_a_seg_of_another_series_is_refused(study):
    root, written = study
    image, info = read_series(root / "LUNG-001" / "study" / "CT")
    with pytest.raises(CaseError, match=rf"frame of reference {written['LUNG-003']['frame_uid']}"):
        read_seg_mask(root / "LUNG-003" / "study" / "SEG" / "seg.dcm", image, info, "tumour")


def test_an_unknown_segment_names_the_segments(study):
    root, _ = study
    image, info = read_series(root / "LUNG-003" / "study" / "CT")
    with pytest.raises(CaseError, match=r"no segment number 7; the segments are \{1: 'tumour'\}"):
        read_seg_mask(root / "LUNG-003" / "study" / "SEG" / "seg.dcm", image, info, "7")
