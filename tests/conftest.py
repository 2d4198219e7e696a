"""Shared fixtures and factories.

Reference data: each file is looked for first in tests/data/ (the small files vendored with the project,
see tests/data/README.md), then in $HARMONY_REFERENCE_DATA (default ../shared/data). Data found in neither
skips the test on a user's machine and fails it under CI (``CI=true``): CI never skips a correctness test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import write_cases
from harmony.core.images import write_case
from harmony.extraction.engine import run_tasks
from harmony.perturb.design import expand_design

ROOT = Path(__file__).resolve().parents[1]
TESTS_DATA = ROOT / "tests" / "data"
REFERENCE_DATA = Path(os.environ.get("HARMONY_REFERENCE_DATA", ROOT.parent / "shared" / "data"))
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def reference_path(*parts: str) -> Path:
    """The reference file or folder ``parts``: the vendored copy in tests/data when present, else the one in
    $HARMONY_REFERENCE_DATA. Absent from both, the calling test skips with the reason, or fails under CI."""
    for base in (TESTS_DATA, REFERENCE_DATA):
        path = base.joinpath(*parts)
        if path.exists():
            return path
    where = "/".join(parts)
    message = (f"reference data {where!r} not found in {TESTS_DATA} nor in {REFERENCE_DATA} "
               "(set HARMONY_REFERENCE_DATA to the shared/data folder)")
    if in_ci():
        pytest.fail(f"{message}; under CI=true a correctness test fails instead of skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pyradiomics_cases() -> Path:
    """The folder of pyradiomics' sample cases brain1, breast1 and lung1 (``<name>_image.nrrd``, ``_label.nrrd``)."""
    return reference_path("pyradiomics_cases")


PYRADIOMICS_CASES = ("brain1", "breast1", "lung1")
#: Every feature class on the original image, two LoG sigmas and the wavelet bands.
REAL_PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}},
    "featureClass": {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")},
}


def pyradiomics_cases_csv(path: Path, folder: Path, sites: Mapping[str, str]) -> Path:
    """Write a cases CSV at ``path`` of the pyradiomics sample cases named in ``sites`` (case id -> site)."""
    rows = [{schema.CASE_ID: name, schema.IMAGE: str(folder / f"{name}_image.nrrd"),
             schema.MASK: str(folder / f"{name}_label.nrrd"), schema.SITE: site} for name, site in sites.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# -- small images and masks -----------------------------------------------------------------------------

def voxels(image: sitk.Image) -> np.ndarray:
    """The voxels of ``image`` as a (z, y, x) array."""
    return sitk.GetArrayFromImage(image)


def sitk_image(array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Sequence[float] = IDENTITY) -> sitk.Image:
    """A SimpleITK image of a (z, y, x) array; spacing, origin and direction in SimpleITK's (x, y, z) order."""
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    return image


def ball_case(shape: Sequence[int] = (10, 28, 28), spacing: Sequence[float] = (1.0, 1.0, 1.0),
              radius_mm: float = 6.0, *, centre: Sequence[float] | None = None, seed: int = 0, noise: float = 5.0,
              direction: Sequence[float] = IDENTITY, origin: Sequence[float] = (-12.5, 30.0, 7.25), label: int = 1,
              dtype=np.float32) -> tuple[sitk.Image, sitk.Image]:
    """An image (a smooth bright blob, 100 + 200 exp(-(d / 2r)^2), plus Gaussian noise of SD ``noise``) and
    the ball d <= ``radius_mm`` as a uint8 mask of value ``label``. ``shape`` and ``centre`` (voxels) are
    (z, y, x); ``spacing`` is (x, y, z) as SimpleITK's."""
    zyx = np.indices(shape).astype(float)
    sp = np.asarray(spacing, float)[::-1]
    c = (np.asarray(shape) - 1) / 2.0 if centre is None else np.asarray(centre, float)
    dist = np.sqrt(sum(((zyx[i] - c[i]) * sp[i]) ** 2 for i in range(3)))
    rng = np.random.default_rng(seed)
    image = 100.0 + 200.0 * np.exp(-(dist / (2 * radius_mm)) ** 2) + rng.normal(0, noise, tuple(shape))
    mask = (dist <= radius_mm).astype(np.uint8) * np.uint8(label)
    geometry = {"spacing": spacing, "origin": origin, "direction": direction}
    return sitk_image(image.astype(dtype), **geometry), sitk_image(mask, **geometry)


def write_cases_csv(folder: Path, cases: Mapping[str, tuple[sitk.Image, sitk.Image]],
                    sites: str | Sequence[str] = "s") -> pd.DataFrame:
    """Write each case's image and mask to ``folder`` and the cases table listing them as ``folder/cases.csv``.

    ``sites`` is one site for every case or one per case. Returns the table (absolute paths)."""
    sites = [sites] * len(cases) if isinstance(sites, str) else list(sites)
    rows = []
    for (case_id, (image, mask)), site in zip(cases.items(), sites, strict=True):
        image_path, mask_path = write_case(image, mask, folder, case_id)
        rows.append({schema.CASE_ID: case_id, schema.SITE: site, schema.IMAGE: str(image_path),
                     schema.MASK: str(mask_path)})
    table = pd.DataFrame(rows)
    write_cases(table, folder / "cases.csv")
    return table


# -- features tables ------------------------------------------------------------------------------------

def features_table(values: Mapping[tuple[str, str], float], site: str = "s", variant: str = schema.ORIGINAL,
                   repeat: int = 0) -> pd.DataFrame:
    """A features table (schema.FEATURES) of ``{(case_id, feature): value}``, one site, variant and repeat."""
    return pd.DataFrame([{schema.CASE_ID: c, schema.SITE: site, schema.VARIANT_ID: variant, schema.REPEAT: repeat,
                          schema.FEATURE: f, schema.VALUE: v} for (c, f), v in values.items()],
                        columns=schema.FEATURES.names)


#: The variants of :func:`perturbed_features` and their kinds.
PERTURBED_KINDS = {schema.ORIGINAL: schema.ORIGINAL, "n1": "noise", "n2": "noise", "b1": "discretisation",
                   "m1": "mask", "nm": "mask+noise"}


def perturbed_features(n_cases: int = 20, seed: int = 0, repeats: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and variants tables of known reliability: 'steady' (tiny noise), 'noisy' (broken by noise
    only), 'flat' (constant) and 'gappy' (missing for 5 cases under variant m1)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n_cases) * 5
    rows = []
    for variant, kind in PERTURBED_KINDS.items():
        for repeat in range(1 if variant == schema.ORIGINAL else repeats):
            for c in range(n_cases):
                noise = rng.normal()
                values = {"steady": truth[c] + 0.01 * noise * (variant != schema.ORIGINAL),
                          "noisy": truth[c] + 20 * noise * ("noise" in kind),
                          "flat": 7.0,
                          "gappy": truth[c] + 0.01 * noise}
                for name, value in values.items():
                    if name == "gappy" and variant == "m1" and c < 5:
                        continue
                    rows.append((f"case{c:02d}", "site", variant, repeat, name, value))
    features = pd.DataFrame(rows, columns=schema.FEATURES.names)
    variants = pd.DataFrame({schema.VARIANT_ID: list(PERTURBED_KINDS), schema.KIND: list(PERTURBED_KINDS.values()),
                             schema.PARAMS: "[]", schema.SEED: 0})
    return features, variants


# -- the extraction engine's small cohort ---------------------------------------------------------------

ENGINE_PARAMS = {"setting": {"binWidth": 10, "label": 1},
                 "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}, "Wavelet": {}},
                 # a few features of each kind of class keep the tests fast; the filters and crops are what is tested
                 "featureClass": {"shape": ["VoxelVolume", "Sphericity"], "firstorder": ["Mean", "Entropy", "Kurtosis"],
                                  "glcm": ["Contrast", "Correlation", "JointEntropy"], "glszm": ["ZonePercentage"]}}
ENGINE_DESIGN = {"grid": [{"noise": {"level": [0.0, 5.0]}, "erode_dilate": {"distance_mm": [-1.0, 0.0, 1.0]},
                           "bin_width": {"width": [5.0, 10.0]}}]}


def blob(seed: int) -> tuple[sitk.Image, sitk.Image]:
    """A small anisotropic int16 case (8 x 16 x 14 voxels of 1 x 1.2 x 2 mm) with a 4.5 mm ball mask."""
    return ball_case((8, 16, 14), (1.0, 1.2, 2.0), 4.5, seed=seed, noise=15.0, origin=(-3.0, 4.0, 10.0),
                     dtype=np.int16)


@pytest.fixture(scope="session")
def engine_cohort(tmp_path_factory) -> pd.DataFrame:
    """Two small cases on disk and their cases table (also ``cases.csv`` beside the images)."""
    folder = tmp_path_factory.mktemp("cohort")
    return write_cases_csv(folder, {"a": blob(10), "b": blob(11)}, ["site0", "site1"])


@pytest.fixture(scope="session")
def engine_variants():
    """The 12 variants of ENGINE_DESIGN (2 noise levels x 3 masks x 2 bin widths)."""
    return expand_design(ENGINE_DESIGN, seed=0, base_params=ENGINE_PARAMS)


@pytest.fixture(scope="session")
def engine_serial_run(engine_cohort, engine_variants, tmp_path_factory):
    """The serial engine's run of the cohort's 24 tasks, the result the other executors must equal."""
    return run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, tmp_path_factory.mktemp("serial"),
                     executor="serial", progress=False)


def sorted_features(features: pd.DataFrame) -> pd.DataFrame:
    """A validated features table in key order, for comparing runs."""
    return schema.FEATURES.validate(features).sort_values(
        [schema.CASE_ID, schema.VARIANT_ID, schema.REPEAT, schema.FEATURE], ignore_index=True)
