"""The IBSI 1 digital phantom (5x4x4 voxels), and writing a phantom case to disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import write_cases

# IBSI 1 digital phantom (Zwanenburg et al., IBSI reference manual, CC BY 4.0): 5 x 4 x 4 voxels of
# 2 mm, grey levels 1-9, 74 voxels in the mask. Arrays are indexed [z][y][x], as SimpleITK returns them.
_IBSI_IMAGE = [
    [[1, 4, 4, 1, 1], [1, 4, 6, 1, 1], [4, 1, 6, 4, 1], [4, 4, 6, 4, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 6, 1, 1], [1, 1, 3, 1, 1], [4, 4, 6, 1, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 1, 1, 1], [1, 1, 9, 1, 1], [1, 1, 6, 1, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 6, 1, 1]],
]


_IBSI_MASK = [
    [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
    [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
    [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 1, 1], [1, 1, 1, 1, 1]],
    [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
]


IBSI_SPACING_MM = (2.0, 2.0, 2.0)


def ibsi_digital_phantom() -> tuple[sitk.Image, sitk.Image]:
    """The IBSI 1 digital phantom as (float32 image, uint8 mask), 2 mm isotropic, origin 0, identity axes.

    >>> image, mask = ibsi_digital_phantom()
    >>> image.GetSize(), image.GetSpacing(), int(sitk.GetArrayViewFromImage(mask).sum())
    ((5, 4, 4), (2.0, 2.0, 2.0), 74)
    """
    image = sitk.GetImageFromArray(np.asarray(_IBSI_IMAGE, dtype=np.float32))
    mask = sitk.GetImageFromArray(np.asarray(_IBSI_MASK, dtype=np.uint8))
    for img in (image, mask):
        img.SetSpacing(IBSI_SPACING_MM)
        img.SetOrigin((0.0, 0.0, 0.0))
    return image, mask


def write_case(image: sitk.Image, mask: sitk.Image, directory: str | os.PathLike, case_id: str,
               extension: str = ".nrrd") -> tuple[Path, Path]:
    """Write a case's image and mask as ``<case_id>_image<ext>`` and ``<case_id>_mask<ext>`` (compressed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / f"{case_id}_image{extension}", directory / f"{case_id}_mask{extension}"
    for img, path in zip((image, mask), paths):
        sitk.WriteImage(img, str(path), useCompression=True)
    return paths


def write_ibsi_phantom(directory: str | os.PathLike) -> pd.DataFrame:
    """Write the IBSI digital phantom and a one-row cases table (returned; also ``cases.csv``)."""
    directory = Path(directory)
    image_path, mask_path = write_case(*ibsi_digital_phantom(), directory, "ibsi_phantom")
    cases = pd.DataFrame({schema.CASE_ID: ["ibsi_phantom"], schema.SITE: ["ibsi"],
                          schema.IMAGE: [str(image_path)], schema.MASK: [str(mask_path)]})
    write_cases(cases, directory / "cases.csv")
    return cases
