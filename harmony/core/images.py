"""Reading images with SimpleITK; a missing or unreadable file is a :class:`CaseError` naming it."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from harmony.core.errors import CaseError


def read_image(path: str | os.PathLike, what: str = "image", case_id: str | None = None) -> sitk.Image:
    """Read an image with SimpleITK; a missing or unreadable file raises CaseError naming it."""
    who = f"case {case_id!r}: " if case_id is not None else ""
    path = Path(path)
    if not path.is_file():
        raise CaseError(f"{who}{what} file not found: {path}")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"{who}{what} file is unreadable: {path} ({first})") from None


def as_image(obj: sitk.Image | str | os.PathLike, what: str = "image") -> sitk.Image:
    """``obj`` itself when it is an image, else the image read from that path."""
    return obj if isinstance(obj, sitk.Image) else read_image(obj, what)
