"""Fixtures of the DICOM tests: the study written once per session, and a private conversion cache."""

from __future__ import annotations

import pytest

from harmony.core.dicom.cache import CACHE_ENV
from tests.conftest import reference_path
from tests.core.dicom.study import lung1_crop, write_study


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Converted volumes go to the test's own folder, never to the user's cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def lung1():
    return lung1_crop(reference_path("pyradiomics_cases"))


@pytest.fixture(scope="session")
def study(tmp_path_factory, lung1):
    root = tmp_path_factory.mktemp("dicom_study")
    return root, write_study(root, *lung1)
