"""Making every variant of every case (``harmony perturb``): failures collected, images optionally saved."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import load_case_images
from harmony.core.files import path_component
from harmony.core.progress import progress_bar
from harmony.perturb import ops
from harmony.perturb.variants import Variant, iter_variants

__all__ = ["INSPECTION_MARGIN_MM", "perturb_cases"]

#: Around a saved variant's mask, this many mm of image are written (the whole image with ``full_images``).
INSPECTION_MARGIN_MM = 30.0


def _inspection_crop(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    roi = sitk.GetArrayViewFromImage(mask) != 0
    lo, hi = ops.neighbourhood(roi, ops.pad_voxels(INSPECTION_MARGIN_MM, ops.Grid.of(image).spacing_zyx))
    (z0, y0, x0), (z1, y1, x1) = lo, hi + 1
    return image[int(x0):int(x1), int(y0):int(y1), int(z0):int(z1)], mask[int(x0):int(x1), int(y0):int(y1), int(z0):int(z1)]


def perturb_cases(cases: pd.DataFrame, variants: list[Variant], *, out_dir=None, save_images: bool = False,
                  full_images: bool = False, label: int = 1, progress: bool | None = None) -> pd.DataFrame:
    """Make every variant of every case (repeat 0) and return the failures table (schema.FAILURES).

    A variant that cannot be made for a case (an erosion past its guard, an emptied mask ...) is a row with
    the reason, not an exception: ``harmony perturb`` checks a design this way before an extraction.

    Parameters
    ----------
    cases : DataFrame
        A cases table (:func:`harmony.load_cases`).
    variants : list of Variant
        E.g. from :func:`~harmony.perturb.design.expand_design`.
    out_dir : str or os.PathLike, optional
        Where saved images go; required with ``save_images``.
    save_images : bool, default False
        Write each made variant to ``out_dir/images/<case_id>/<variant_id>_image.nrrd`` and
        ``..._mask.nrrd``: the mask's neighbourhood (:data:`INSPECTION_MARGIN_MM`) for inspection.
    full_images : bool, default False
        Save the whole image instead of the neighbourhood.
    label : int, default 1
        The ROI is ``mask == label``.
    progress : bool, optional
        A progress bar over the variants (``None``: only on a terminal).

    Returns
    -------
    DataFrame
        The failures table (:data:`harmony.core.schema.FAILURES`): ``case_id, variant_id, repeat, error``.

    Raises
    ------
    ValueError
        ``save_images`` without ``out_dir``.
    SchemaError
        ``cases`` is not a cases table.
    CaseError
        A case's files cannot be read.
    PathError
        With ``save_images``, a ``case_id`` that cannot be a folder name
        (:func:`harmony.core.files.path_component`); before any image is made.

    Examples
    --------
    >>> import tempfile
    >>> from harmony.perturb.specs import Volume
    >>> from harmony.phantoms import write_ibsi_phantom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     cases = write_ibsi_phantom(folder)
    ...     failures = perturb_cases(cases, [Variant(), Variant((Volume(fraction=0.001),))], progress=False)
    >>> failures[["case_id", "variant_id"]].to_dict("records")
    [{'case_id': 'ibsi_phantom', 'variant_id': '81534eea8a0a61c0'}]
    """
    if save_images and out_dir is None:
        raise ValueError("save_images needs out_dir")
    cases = schema.CASES.validate(cases, source="perturb")
    if save_images:  # every case's folder name, before any image is made
        for case_id in cases[schema.CASE_ID]:
            path_component(case_id, "case_id")
    rows = []
    with progress_bar(total=len(cases) * len(variants), desc="perturb", unit="variant", progress=progress) as bar:
        for case in cases.to_dict("records"):
            case_id = case[schema.CASE_ID]
            image, mask = load_case_images(case)
            folder = Path(out_dir) / "images" / str(case_id) if save_images else None
            for variant, made, error in iter_variants(image, mask, variants, case_id=case_id, label=label):
                bar.update()
                if error is not None:
                    rows.append({schema.CASE_ID: case_id, schema.VARIANT_ID: variant.variant_id, schema.REPEAT: 0,
                                 schema.ERROR: str(error)})
                elif folder is not None:
                    out_image, out_mask = made if full_images else _inspection_crop(*made)
                    folder.mkdir(parents=True, exist_ok=True)
                    name = path_component(variant.variant_id, "variant_id", suffix="_image.nrrd")
                    sitk.WriteImage(out_image, str(folder / f"{name}_image.nrrd"), True)
                    sitk.WriteImage(out_mask, str(folder / f"{name}_mask.nrrd"), True)
    return schema.FAILURES.validate(pd.DataFrame(rows, columns=schema.FAILURES.names), source="perturb")
