"""Reading images with SimpleITK; a missing or unreadable file is a :class:`CaseError` naming it."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from harmony.core.errors import CaseError
from harmony.core.files import path_component

__all__ = ["read_image", "as_image", "check_finite_in_mask", "write_case"]


def read_image(path: str | os.PathLike, what: str = "image", case_id: str | None = None) -> sitk.Image:
    """Read an image with SimpleITK; a missing or unreadable file raises CaseError naming it.

    Parameters
    ----------
    path : str or os.PathLike
        Any file SimpleITK reads (NRRD, NIfTI, MHA, ...).
    what : str, default "image"
        What the file is ("image", "mask"), for the error message.
    case_id : str, optional
        The case the file belongs to, for the error message.

    Returns
    -------
    SimpleITK.Image

    Raises
    ------
    CaseError
        The file does not exist or SimpleITK cannot read it.

    Examples
    --------
    >>> read_image("no/such/ct.nrrd", case_id="p001")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: case 'p001': image file not found: no/such/ct.nrrd
    """
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
    """``obj`` itself when it is an image, else the image read from that path.

    Parameters
    ----------
    obj : SimpleITK.Image, str or os.PathLike
        An image, or the path of one.
    what : str, default "image"
        What it is ("image", "mask"), for the error message of :func:`read_image`.

    Returns
    -------
    SimpleITK.Image
        ``obj`` itself (not a copy) when it is an image.

    Raises
    ------
    CaseError
        ``obj`` is a path that does not exist or cannot be read.

    Examples
    --------
    >>> image = sitk.Image(2, 2, 2, sitk.sitkFloat32)
    >>> as_image(image) is image
    True
    """
    return obj if isinstance(obj, sitk.Image) else read_image(obj, what)


def check_finite_in_mask(image: sitk.Image, mask: sitk.Image, label: int = 1, case_id: str | None = None) -> None:
    """Raise CaseError when a voxel of ``image`` inside the mask's ``label`` is NaN or infinite.

    pyradiomics would turn such a voxel into NaN features (or a discretisation error) without saying why;
    harmony's policy is to fail the case, naming the reason.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The case's image and mask, on the same grid.
    label : int, default 1
        The mask label of the region.
    case_id : str, optional
        The case, for the message.

    Raises
    ------
    CaseError
        ``"image has NaN or infinite voxels inside the mask: <n> of <size> (label <label>)"``.

    Examples
    --------
    >>> import numpy as np
    >>> voxels = np.ones((2, 2, 2), dtype=np.float32)
    >>> voxels[0, 0, 0] = np.nan
    >>> image, mask = sitk.GetImageFromArray(voxels), sitk.GetImageFromArray(np.ones((2, 2, 2), np.uint8))
    >>> check_finite_in_mask(image, mask, case_id="p1")
    Traceback (most recent call last):
    ...
    harmony.core.errors.CaseError: case 'p1': image has NaN or infinite voxels inside the mask: 1 of 8 ...
    """
    import numpy as np

    voxels = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(voxels.dtype, np.floating):
        return
    region = sitk.GetArrayViewFromImage(mask) == label
    if voxels.shape[:region.ndim] != region.shape:
        return  # not on one grid: the extraction reports it
    bad = int(np.count_nonzero(~np.isfinite(voxels[region])))
    if bad:
        who = f"case {case_id!r}: " if case_id is not None else ""
        raise CaseError(f"{who}image has NaN or infinite voxels inside the mask: {bad} of "
                        f"{int(region.sum())} (label {label})")


def write_case(image: sitk.Image, mask: sitk.Image, directory: str | os.PathLike, case_id: str,
               extension: str = ".nrrd") -> tuple[Path, Path]:
    """Write a case's image and mask as ``<case_id>_image<ext>`` and ``<case_id>_mask<ext>`` (compressed).

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The case.
    directory : str or os.PathLike
        Where to write them (created when absent).
    case_id : str
        The files' stem.
    extension : str, default ".nrrd"
        Any extension SimpleITK writes (``".nii.gz"``, ``".mha"``, ...).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The image file and the mask file.

    Raises
    ------
    PathError
        ``case_id`` cannot be a file name (:func:`harmony.core.files.path_component`).

    Examples
    --------
    >>> import tempfile
    >>> image = sitk.Image(4, 4, 2, sitk.sitkInt16)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.name for p in write_case(image, sitk.Image(4, 4, 2, sitk.sitkUInt8), folder, "c1", ".nii.gz")]
    ['c1_image.nii.gz', 'c1_mask.nii.gz']
    """
    name = path_component(case_id, "case_id", suffix=f"_image{extension}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / f"{name}_image{extension}", directory / f"{name}_mask{extension}"
    for img, path in zip((image, mask), paths):
        sitk.WriteImage(img, str(path), useCompression=True)
    return paths
