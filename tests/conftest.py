"""Shared fixtures. Reference data lives in ../shared/data (override with HARMONY_REFERENCE_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = Path(os.environ.get("HARMONY_REFERENCE_DATA", ROOT.parent / "shared" / "data"))


def reference_path(*parts: str) -> Path:
    """Path into the reference data; skips the calling test with a reason when it is absent."""
    path = REFERENCE_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (set HARMONY_REFERENCE_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def reference_data() -> Path:
    return reference_path()


@pytest.fixture(scope="session")
def pyradiomics_cases() -> Path:
    return reference_path("pyradiomics_cases")
