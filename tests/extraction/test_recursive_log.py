"""The pass-by-pass LoG equals pyradiomics' getLoGImage cropped to the box, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.extraction.recursive_log import _log_crops
from harmony.extraction.shared import _crop


def _reference(image: sitk.Image, box, sigma) -> list[tuple[sitk.Image, str]]:
    from radiomics import imageoperations

    return [(_crop(im, box), name) for im, name, _ in imageoperations.getLoGImage(image, None, sigma=[sigma])]


def _assert_identical(expected, got) -> None:
    assert [n for _, n in got] == [n for _, n in expected]
    for (a, _), (b, _) in zip(expected, got):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection(), a.GetPixelID()) == \
            (b.GetOrigin(), b.GetSpacing(), b.GetDirection(), b.GetPixelID())


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32])
@pytest.mark.parametrize("sigma", [1, 1.5, 3.0])
def test_log_crops_equal_pyradiomics_log_cropped(dtype, sigma):
    rng = np.random.default_rng(5)
    array = rng.normal(100, 40, size=(14, 30, 27)).clip(0, 250).astype(dtype)  # (z, y, x)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((-4.0, 2.0, 7.5))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    box = (np.array([3, 10, 2]), np.array([9, 17, 11]))  # (x, y, z)
    got = _log_crops(image, box, sigma)
    assert got is not None
    _assert_identical(_reference(image, box, sigma), got)


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(4, 12), st.integers(4, 12), st.integers(4, 12)), data=st.data())
def test_log_crops_equal_pyradiomics_log_for_any_box(shape, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    image = sitk.GetImageFromArray(rng.integers(-1000, 1000, size=shape[::-1]).astype(np.int16))
    image.SetSpacing(tuple(data.draw(st.sampled_from([0.5, 1.0, 1.7])) for _ in range(3)))
    lower = np.array([data.draw(st.integers(0, n - 1)) for n in shape])
    upper = np.array([data.draw(st.integers(lo, n - 1)) for lo, n in zip(lower, shape)])
    sigma = data.draw(st.sampled_from([0.5, 1.0, 2.0]))
    got = _log_crops(image, (lower, upper), sigma)
    expected = _reference(image, (lower, upper), sigma)
    if got is None:  # pyradiomics skips this sigma for this size: so must the caller
        assert expected == []
    else:
        _assert_identical(expected, got)


def test_log_crops_decline_what_they_are_not_checked_for():
    image = sitk.GetImageFromArray(np.zeros((6, 6, 6), np.float64))
    box = (np.array([1, 1, 1]), np.array([3, 3, 3]))
    assert _log_crops(image, box, 1.0) is None  # float64: pyradiomics' own filter runs
    assert _log_crops(sitk.Cast(image, sitk.sitkInt16), None, 1.0) is None
    assert _log_crops(sitk.Cast(image, sitk.sitkInt16), box, 0.0) is None
    assert _log_crops(sitk.Cast(image, sitk.sitkInt16)[:3, :, :], box, 1.0) is None  # smaller than 4 voxels
