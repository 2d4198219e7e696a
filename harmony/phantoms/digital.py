"""The IBSI 1 digital phantom (5x4x4 voxels), and writing a phantom case to disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import write_cases
from harmony.core.images import write_case

__all__ = ["IBSI_SPACING_MM", "ibsi_digital_phantom", "write_ibsi_phantom"]

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


#: Voxel size of the IBSI 1 digital phantom (mm, x, y, z).
IBSI_SPACING_MM = (2.0, 2.0, 2.0)


def ibsi_digital_phantom() -> tuple[sitk.Image, sitk.Image]:
    """The IBSI 1 digital phantom as (float32 image, uint8 mask), 2 mm isotropic, origin 0, identity axes.

    The 5x4x4-voxel phantom of the IBSI reference manual (Zwanenburg et al., CC BY 4.0): grey levels 1 to 9,
    74 voxels in the mask. :func:`harmony.ibsi_compliance` compares pyradiomics' features of it with the
    IBSI consensus values.

    Returns
    -------
    (SimpleITK.Image, SimpleITK.Image)
        The image (float32) and the mask (uint8, label 1), on the same grid.

    Examples
    --------
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


def write_ibsi_phantom(directory: str | os.PathLike) -> pd.DataFrame:
    """Write the IBSI digital phantom and a one-row cases table (returned; also ``cases.csv``).

    Parameters
    ----------
    directory : str or os.PathLike
        Where to write ``ibsi_phantom_image.nrrd``, ``ibsi_phantom_mask.nrrd`` and ``cases.csv``.

    Returns
    -------
    DataFrame
        The cases table: ``case_id`` "ibsi_phantom", ``site`` "ibsi", the image and mask paths.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_ibsi_phantom(folder)[["case_id", "site"]].to_dict("records")
    [{'case_id': 'ibsi_phantom', 'site': 'ibsi'}]
    """
    directory = Path(directory)
    image_path, mask_path = write_case(*ibsi_digital_phantom(), directory, "ibsi_phantom")
    cases = pd.DataFrame({schema.CASE_ID: ["ibsi_phantom"], schema.SITE: ["ibsi"],
                          schema.IMAGE: [str(image_path)], schema.MASK: [str(mask_path)]})
    write_cases(cases, directory / "cases.csv")
    return cases
