"""A multi-site radiomics table of real anatomy with a ground truth: ``features.csv`` and ``truth.csv``.

The anatomy is real: pyradiomics' sample CT ``lung1`` (the crop vendored in ``tests/data/pyradiomics_cases``,
BSD-3-Clause). A "subject" is a region of interest in it: the drawn lesion, or a sphere of radius 5, 7 or
9 mm centred at a seeded random position where that sphere lies entirely in lung parenchyma
(-1000 < HU < -500) or in soft tissue (-100 < HU < 150). Tissue class and radius are the subjects' biology
(the covariates ``tissue`` and ``radius_mm``). Each subject is imaged on ONE of four simulated CT scanners,
its site, with harmony's scanner simulation (:func:`harmony.phantoms.scanners.acquire`: point-spread
function, integration over the scanner's voxel, resampling to its grid, noise, calibration): the built-in
profiles ``ct_sharp_1mm``, ``ct_smooth_5mm`` and ``ct_standard_2mm_offset`` and a low-dose profile defined
here. Sites are unbalanced (30, 24, 18 and 12 spheres, plus the lesion once on each) and their tissue mix
differs, as in real studies. The ROI is drawn on each scanner's grid from its physical definition (the
lesion's label is resampled by nearest neighbour).

Features: pyradiomics through harmony's extractor, the original image, first-order and the five texture
classes (93 features), bin width 25 HU, resampled to 1 x 1 x 2 mm (B-spline) as multi-site studies do.
The ground truth is the same ROI extracted from the unmodified real image (``truth.csv``): what a
harmonizer should recover up to a per-feature affine map.

Every subject draws its noise from ``SeedSequence(SEED, spawn_key=(row,))`` after the whole design has been
drawn once, so any row can be rebuilt on its own (``tests/harmonize/test_like_real.py`` does, to keep the
stored table what this script produces). Rerun from the repository root::

    PYTHONPATH=. python tests/data/real_multisite/make_table.py

It took 8 s on the development machine (2 cores shared with other work), writing both CSVs next to this file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from harmony.core.config import validate
from harmony.extraction.adapter import extract, make_extractor
from harmony.phantoms.scanners import acquire
from harmony.phantoms.specs import SCANNER, load_scanner

HERE = Path(__file__).resolve().parent
CASES = HERE.parent / "pyradiomics_cases"
SEED = 20261202
#: Spheres per site (the lesion is added once on each), and the fraction of them in lung parenchyma.
SITES = {"ct_sharp_1mm": (30, 0.75), "ct_smooth_5mm": (24, 0.5), "ct_standard_2mm_offset": (18, 0.35),
         "ct_lowdose_3mm": (12, 0.6)}
LOW_DOSE = {"description": "CT, 3 mm slices, 0.8 mm pixels, low dose: strong noise, calibration offset",
            "resolution": {"pixel_mm": 0.8, "slice_mm": 3.0}, "psf": {"fwhm_mm": [1.2, 1.2, 2.0]},
            "noise": {"sd": 35.0, "correlation_mm": 0.6}, "calibration": {"scale": 0.97, "offset": -20.0}}
RADII_MM = (5.0, 7.0, 9.0)
TISSUES = {"lung": (-1000.0, -500.0), "soft": (-100.0, 150.0)}
#: The patch imaged around an ROI: its radius plus this margin (mm), so the scanner's blur sees real anatomy.
MARGIN_MM = 12.0
PARAMS = {"setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": [1.0, 1.0, 2.0],
                      "interpolator": "sitkBSpline"},
          "imageType": {"Original": {}},
          "featureClass": {name: [] for name in ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")}}


def scanner(name: str) -> dict:
    """The validated profile of a site."""
    return validate(LOW_DOSE, SCANNER) if name == "ct_lowdose_3mm" else load_scanner(name)


def _load() -> tuple[sitk.Image, sitk.Image]:
    image = sitk.Cast(sitk.ReadImage(str(CASES / "lung1_image.nrrd")), sitk.sitkFloat32)
    return image, sitk.ReadImage(str(CASES / "lung1_label.nrrd"))


def design(image: sitk.Image, label: sitk.Image) -> pd.DataFrame:
    """Every subject: case_id, site, tissue, radius_mm and its ROI centre (mm, physical x, y, z)."""
    rng = np.random.default_rng(SEED)
    hu = sitk.GetArrayFromImage(image)
    spacing_zyx = np.asarray(image.GetSpacing())[::-1]
    rows = []
    for tissue, (low, high) in TISSUES.items():
        inside = (hu > low) & (hu < high)
        distance_mm = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
        rows.append((tissue, distance_mm))
    distance = dict(rows)
    subjects = []
    for site, (n, lung_fraction) in SITES.items():
        for _ in range(n):
            tissue = "lung" if rng.random() < lung_fraction else "soft"
            radius = float(rng.choice(RADII_MM))
            candidates = np.argwhere(distance[tissue] >= radius)
            z, y, x = candidates[rng.integers(len(candidates))]
            centre = image.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
            subjects.append({"site": site, "tissue": tissue, "radius_mm": radius, "centre": centre})
        lesion = sitk.GetArrayFromImage(label) > 0
        radius = float(np.cbrt(3 * lesion.sum() * np.prod(spacing_zyx) / (4 * np.pi)))
        subjects.append({"site": site, "tissue": "lesion", "radius_mm": round(radius, 2), "centre": None})
    table = pd.DataFrame(subjects)
    table.insert(0, "case_id", [f"roi{i:03d}" for i in range(len(table))])
    return table


def _sphere(reference: sitk.Image, centre: tuple, radius_mm: float) -> sitk.Image:
    """The ball of ``radius_mm`` around ``centre`` drawn on ``reference``'s grid (voxel centres inside)."""
    size = reference.GetSize()
    index = np.stack(np.meshgrid(*(np.arange(s) for s in size), indexing="ij"), axis=-1).reshape(-1, 3)
    spacing, origin = np.asarray(reference.GetSpacing()), np.asarray(reference.GetOrigin())
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    points = origin + (index * spacing) @ direction.T
    inside = (np.linalg.norm(points - np.asarray(centre), axis=1) <= radius_mm).reshape(size)
    mask = sitk.GetImageFromArray(inside.transpose(2, 1, 0).astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


def _patch(image: sitk.Image, label: sitk.Image, subject: pd.Series) -> tuple[sitk.Image, sitk.Image, tuple]:
    """The sub-volume around the subject's ROI (its centre: the lesion's centroid for the lesion)."""
    if subject["centre"] is None:
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(label)
        centre = stats.GetCentroid(1)
    else:
        centre = tuple(subject["centre"])
    spacing = np.asarray(image.GetSpacing())
    half = np.ceil((subject["radius_mm"] + MARGIN_MM) / spacing).astype(int)
    middle = np.round(image.TransformPhysicalPointToContinuousIndex(centre)).astype(int)
    start = np.maximum(middle - half, 0)
    stop = np.minimum(middle + half + 1, image.GetSize())
    box = [int(v) for v in stop - start]
    return (sitk.RegionOfInterest(image, box, [int(v) for v in start]),
            sitk.RegionOfInterest(label, box, [int(v) for v in start]), centre)


def subject_rows(rows: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features table and the truth table of the given rows of the design (default: all).

    Parameters
    ----------
    rows : list of int, optional
        Row numbers of :func:`design`.

    Returns
    -------
    (DataFrame, DataFrame)
        ``case_id, site, tissue, radius_mm`` and the features on the subject's scanner; ``case_id`` and the
        features of the same ROI on the unmodified image.
    """
    image, label = _load()
    table = design(image, label)
    extractor = make_extractor(PARAMS, source="real_multisite")
    features, truth = [], []
    for row in range(len(table)) if rows is None else rows:
        subject = table.iloc[row]
        patch, patch_label, centre = _patch(image, label, subject)
        native_mask = patch_label if subject["centre"] is None else _sphere(patch, centre, subject["radius_mm"])
        rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(row,)))
        scan, scan_mask = acquire(patch, native_mask, scanner(subject["site"]), rng)
        if subject["centre"] is not None:
            scan_mask = _sphere(scan, centre, subject["radius_mm"])
        meta = {"case_id": subject["case_id"], "site": subject["site"], "tissue": subject["tissue"],
                "radius_mm": subject["radius_mm"]}
        features.append(meta | extract(scan, scan_mask, extractor).features)
        truth.append({"case_id": subject["case_id"]} | extract(patch, native_mask, extractor).features)
    return pd.DataFrame(features), pd.DataFrame(truth)


def main() -> int:
    start = time.perf_counter()
    features, truth = subject_rows()
    features.to_csv(HERE / "features.csv", index=False, float_format="%.17g")
    truth.to_csv(HERE / "truth.csv", index=False, float_format="%.17g")
    print(f"{len(features)} subjects, {features.shape[1] - 4} features, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
