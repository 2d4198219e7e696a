"""Phantoms: procedural lesions, scanner profiles, cohort simulation and the IBSI 1 digital phantom.

A phantom is a pure function of (spec, seed): :func:`render_phantom` draws a lesion (sphere, ellipsoid,
lobulated, spiculated, necrotic, multi-component) with its own texture in a textured background tissue, on a
grid in physical coordinates (mm), so a change of spacing does not change the anatomy. A scanner profile
(:data:`SCANNER`, ``phantoms/scanners/*.toml``) turns it into what that scanner reconstructs
(:func:`acquire`). A cohort (:data:`COHORT`) draws subjects whose latent biology may depend on covariates,
images each on one or several scanners and writes the cases table (:func:`simulate_cohort`).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from harmony import schema, textures
from harmony.config import Field, Section, apply_overrides, load, validate
from harmony.errors import ConfigError
from harmony.io import stable_hash, write_json
from harmony.progress import progress_bar

logger = logging.getLogger(__name__)

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
    from harmony.cases import write_cases

    directory = Path(directory)
    image_path, mask_path = write_case(*ibsi_digital_phantom(), directory, "ibsi_phantom")
    cases = pd.DataFrame({schema.CASE_ID: ["ibsi_phantom"], schema.SITE: ["ibsi"],
                          schema.IMAGE: [str(image_path)], schema.MASK: [str(mask_path)]})
    write_cases(cases, directory / "cases.csv")
    return cases


# -- specs (validated with the config DSL) ----------------------------------------------------------

#: Built-in scanner profiles, next to the package in a source checkout: a bare name refers to these.
SCANNER_DIR = Path(__file__).resolve().parents[1] / "phantoms" / "scanners"
#: Column of a simulated cases table naming the subject (a travelling subject has one case per scanner).
SUBJECT = "subject"
_IMAGE_EXTENSIONS = {"nrrd": ".nrrd", "nifti": ".nii.gz"}
# independent random streams of a cohort, keyed by these integers in the SeedSequence entropy
_STREAM_SUBJECTS, _STREAM_PHANTOM = 1, 2


def _xyz(values: list) -> str | None:
    return None if len(values) == 3 else "expected 3 values (x, y, z)"


def _xyz_or_empty(values: list) -> str | None:
    return None if len(values) in (0, 3) else "expected 3 values (x, y, z), or [] for the default"


def _direction_check(values: list) -> str | None:
    if not values:
        return None
    if len(values) != 9:
        return "expected 9 values (a row-major 3 x 3 matrix), or [] for identity"
    matrix = np.asarray(values).reshape(3, 3)
    return None if np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-6) else "the direction matrix must be orthonormal"


def _positive(default: float, doc: str = "") -> Field:
    return Field(float, default, min=0.0, min_exclusive=True, doc=doc)


def _vector(default: list, check=_xyz, doc: str = "", **item) -> Field:
    return Field(list, default, item=Field(float, **item), check=check, doc=doc)


GRID = Section({
    "size": Field(list, [64, 64, 64], item=Field(int, min=1), check=_xyz, doc="Voxels along x, y, z."),
    "spacing_mm": _vector([1.0, 1.0, 1.0], min=0.0, min_exclusive=True, doc="Voxel size along x, y, z (mm)."),
    "origin_mm": _vector([], _xyz_or_empty, doc="Centre of the first voxel; [] centres the grid on 0."),
    "direction": Field(list, [], item=Field(float), check=_direction_check, doc="Row-major axes; [] = identity."),
}, doc="The phantom's high-resolution grid.")

LESION = Section({
    "radius_mm": _positive(10.0, "Radius of the sphere of the same volume (before lobes and spikes)."),
    "center_mm": _vector([0.0, 0.0, 0.0], doc="Lesion centre (physical mm)."),
    "axes": _vector([1.0, 1.0, 1.0], min=0.0, min_exclusive=True, doc="Relative semi-axes: != 1 for an ellipsoid."),
    "orientation": Field(str, "aligned", choices=("aligned", "random"), doc="Ellipsoid axes along the grid or at random."),
    "lobes": Field(int, 0, min=0, doc="Number of lobes (bumps on the radius) of a lobulated lesion."),
    "lobulation": Field(float, 0.0, min=0.0, max=1.0, doc="Relative height of the lobes."),
    "lobe_width": Field(float, 0.3, min=0.05, max=2.0, doc="Angular width of a lobe (1 - cos of the angle)."),
    "spikes": Field(int, 0, min=0, doc="Number of spicules of a spiculated lesion."),
    "spike_length_mm": Field(float, 6.0, min=0.0, doc="Length of a spicule beyond the surface."),
    "spike_width_mm": Field(float, 2.0, min=0.0, doc="Width of a spicule at its base."),
    "components": Field(int, 1, min=1, doc="Number of components of a multi-component lesion."),
    "component_distance_mm": Field(float, 0.0, min=0.0,
                                   doc="Distance of each component's centre from center_mm (spread evenly)."),
    "necrosis_fraction": Field(float, 0.0, min=0.0, max=0.95, doc="Volume fraction of the necrotic core."),
    "necrosis_intensity": Field(float, 20.0, doc="Mean intensity of the necrotic core."),
    "necrosis_heterogeneity": Field(float, 3.0, min=0.0, doc="Texture amplitude (SD) in the core."),
    "intensity": Field(float, 100.0, doc="Mean intensity of the viable lesion."),
    "heterogeneity": Field(float, 10.0, min=0.0, doc="Texture amplitude: SD of the correlated random field."),
    "coarseness_mm": Field(float, 2.0, min=0.0, doc="Texture correlation length (Gaussian kernel SD, mm)."),
    "regions": Field(int, 0, min=0, doc="Piecewise-constant regions (Voronoi cells) over the lesion."),
    "region_contrast": Field(float, 0.0, min=0.0, doc="SD of the regions' intensity levels."),
    "gradient": Field(float, 0.0, doc="Intensity change from the centre to radius_mm along a random direction."),
}, doc="The lesion: shape, necrosis and texture. The mask (label 1) covers it, core included.")

BACKGROUND = Section({
    "intensity": Field(float, 40.0, doc="Mean intensity of the background tissue."),
    "heterogeneity": Field(float, 5.0, min=0.0, doc="Texture amplitude (SD)."),
    "coarseness_mm": Field(float, 4.0, min=0.0, doc="Texture correlation length (mm)."),
})

#: One phantom: its grid, lesion and background tissue.
PHANTOM = Section({"grid": GRID, "lesion": LESION, "background": BACKGROUND})


def _psf_check(psf: dict) -> str | None:
    return "give psf.fwhm_mm or psf.sigma_mm, not both" if psf["fwhm_mm"] and psf["sigma_mm"] else None


#: A scanner profile (``phantoms/scanners/<site>.toml``): the acquisition effects applied to a phantom.
SCANNER = Section({
    "description": Field(str, ""),
    "modality": Field(str, "CT", choices=("CT", "MR", "PET")),
    "resolution": Section({
        "pixel_mm": _positive(1.0, "In-plane voxel size (x and y)."),
        "slice_mm": _positive(1.0, "Slice thickness and spacing (z)."),
    }),
    "psf": Section({
        "fwhm_mm": _vector([], _xyz_or_empty, min=0.0, doc="Gaussian point-spread function FWHM along x, y, z."),
        "sigma_mm": _vector([], _xyz_or_empty, min=0.0, doc="The same as a standard deviation."),
    }, check=_psf_check, doc="Blur besides the integration over each output voxel (modelled as a box)."),
    "noise": Section({
        "sd": Field(float, 0.0, min=0.0, doc="Noise standard deviation (phantom intensity units)."),
        "correlation_mm": Field(float, 0.0, min=0.0,
                                doc="0: white noise (sharp kernel); > 0: correlated noise (smooth kernel)."),
    }),
    "calibration": Section({
        "scale": _positive(1.0, "Output = scale * signal + offset."),
        "offset": Field(float, 0.0),
    }),
    "bias_field": Section({
        "amplitude": Field(float, 0.0, min=0.0, max=1.0, doc="SD of the log of a multiplicative field (MR)."),
        "length_mm": _positive(40.0, "Its correlation length."),
    }),
})

_DISTRIBUTION_FIELDS = {
    "distribution": Field(str, "normal", choices=("constant", "normal", "uniform", "lognormal")),
    "mean": Field(float, 0.0, doc="normal: the mean; constant: the value."),
    "sd": Field(float, 0.0, min=0.0, doc="normal: the standard deviation."),
    "low": Field(float, 0.0, doc="uniform: lower end."),
    "high": Field(float, 1.0, doc="uniform: upper end."),
    "median": _positive(1.0, "lognormal: the median."),
    "sigma": Field(float, 0.0, min=0.0, doc="lognormal: SD of the logarithm."),
    "min": Field(float, None, doc="Values are clipped to [min, max] (after effects)."),
    "max": Field(float, None),
}


def _distribution_check(dist: dict) -> str | None:
    if dist["distribution"] == "uniform" and not dist["low"] < dist["high"]:
        return f"uniform needs low < high, got low={dist['low']}, high={dist['high']}"
    if dist["min"] is not None and dist["max"] is not None and dist["min"] > dist["max"]:
        return f"min must be <= max, got min={dist['min']}, max={dist['max']}"
    return None


_EFFECT = Section({
    "covariate": Field(str, doc="A declared covariate."),
    "coef": Field(float, doc="Added per unit of (covariate - center), or when the covariate equals level."),
    "level": Field(str, "", doc="For a categorical covariate: the level the effect applies to."),
    "center": Field(float, 0.0, doc="For a continuous covariate: the value where the effect is 0."),
})
_COVARIATE = Section({
    "name": Field(str, doc="Column name in the cases table."),
    "levels": Field(list, [], item=Field(str), doc="Categorical: its levels (else continuous)."),
    "probabilities": Field(list, [], item=Field(float, min=0.0), doc="Categorical: level probabilities; [] equal."),
    **_DISTRIBUTION_FIELDS,
}, check=_distribution_check)
#: Lesion parameters that may vary between subjects: every number of LESION.
LATENTS = tuple(name for name, spec in LESION.fields.items() if spec.type is float)
_LATENT = Section({**_DISTRIBUTION_FIELDS, "effects": Field(list, [], item=_EFFECT)}, check=_distribution_check,
                  optional=True)


def _cohort_check(spec: dict) -> str | None:
    names = [c["name"] for c in spec["covariates"]]
    reserved = set(schema.CASES.names) | {SUBJECT}
    for name in names:
        if name in reserved or name.startswith(schema.TRUTH_PREFIX) or names.count(name) > 1:
            return f"covariates: name {name!r} is reserved or repeated"
    for c in spec["covariates"]:
        if c["probabilities"] and (len(c["probabilities"]) != len(c["levels"]) or sum(c["probabilities"]) <= 0):
            return f"covariates: {c['name']!r}: probabilities must match levels and sum to > 0"
    covariates = {c["name"]: c for c in spec["covariates"]}
    for latent, dist in spec["latent"].items():
        for i, effect in enumerate((dist or {}).get("effects", [])):
            where = f"latent.{latent}.effects[{i}]"
            cov = covariates.get(effect["covariate"])
            if cov is None:
                return f"{where}: covariate {effect['covariate']!r} is not declared (declared: {', '.join(names)})"
            if cov["levels"] and effect["level"] not in cov["levels"]:
                return f"{where}: level {effect['level']!r} is not one of {cov['levels']}"
    if spec["scanners"]["travelling"] > spec["cohort"]["subjects"]:
        return "scanners.travelling cannot exceed cohort.subjects"
    return None


#: A cohort spec (``phantoms/cohort_*.toml``, or ``cases.cohort`` inline in an experiment config).
COHORT = Section({
    "cohort": Section({
        "name": Field(str, "cohort"),
        "subjects": Field(int, 20, min=1, doc="Number of subjects."),
        "seed": Field(int, 0, min=0, doc="Root of every draw; --seed overrides it."),
        "prefix": Field(str, "sub", doc="Subject ids are <prefix>000, <prefix>001, ..."),
        "format": Field(str, "nrrd", choices=tuple(_IMAGE_EXTENSIONS), doc="Image file format."),
    }),
    "grid": GRID,
    "lesion": LESION,
    "background": BACKGROUND,
    "covariates": Field(list, [], item=_COVARIATE, doc="Covariates drawn per subject ([[covariates]] tables)."),
    "latent": Section({name: _LATENT for name in LATENTS},
                      doc="Lesion parameters drawn per subject; each becomes a truth_<name> column."),
    "scanners": Section({
        "profiles": Field(list, item=Field(str), min_items=1,
                          doc="Built-in profile names, or paths to profile TOMLs (relative to the spec)."),
        "assignment": Field(str, "balanced", choices=("balanced", "random"), doc="How subjects get a scanner."),
        "travelling": Field(int, 0, min=0, doc="The first N subjects are imaged on every scanner."),
    }, required=True),
}, check=_cohort_check)


def phantom_spec(data: Mapping[str, Any] | None = None, *, file: str = "<phantom spec>") -> dict[str, Any]:
    """A validated phantom spec with every default filled in.

    >>> phantom_spec({"lesion": {"radius_mm": 5}})["lesion"]["radius_mm"]
    5.0
    """
    return validate(dict(data or {}), PHANTOM, file=file)


# -- rendering a phantom ----------------------------------------------------------------------------

def _geometry(grid: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(size, spacing, origin, direction matrix) of a grid spec, all in x, y, z order."""
    size = np.asarray(grid["size"], dtype=int)
    spacing = np.asarray(grid["spacing_mm"], dtype=float)
    direction = np.asarray(grid["direction"], dtype=float).reshape(3, 3) if grid["direction"] else np.eye(3)
    origin = (np.asarray(grid["origin_mm"], dtype=float) if grid["origin_mm"]
              else -direction @ ((size - 1) * spacing / 2))
    return size, spacing, origin, direction


def _set_geometry(image: sitk.Image, spacing, origin, direction) -> sitk.Image:
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in np.ravel(direction)])
    return image


def _physical_points(spacing, origin, direction, lo, hi) -> np.ndarray:
    """Physical (x, y, z) of the voxel centres with index ``lo <= (i, j, k) < hi``, shape ``(3, nz, ny, nx)``."""
    axes = [np.arange(a, b) * d for a, b, d in zip(lo, hi, spacing)]
    kz, jy, ix = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.einsum("ij,j...->i...", direction, np.stack([ix, jy, kz])) + np.asarray(origin)[:, None, None, None]


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _spread_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (a Fibonacci lattice); ``n = 1`` gives one."""
    z = 1 - (2 * np.arange(n) + 1) / n
    azimuth = np.pi * (3 - math.sqrt(5)) * np.arange(n)
    ring = np.sqrt(1 - z * z)
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)


def _draw_shape(lesion: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The random details of a lesion's outline: orientation, lobe and spike directions, component centres."""
    n = lesion["components"]
    shape = {
        "rotation": _random_rotation(rng) if lesion["orientation"] == "random" else np.eye(3),
        "lobes": _unit_vectors(rng, lesion["lobes"]),
        "spikes": _unit_vectors(rng, lesion["spikes"]),
        "spike_owner": rng.integers(n, size=lesion["spikes"]),
    }
    spread = _spread_directions(n) @ _random_rotation(rng).T
    shape["centres"] = np.asarray(lesion["center_mm"]) + spread * (lesion["component_distance_mm"] if n > 1 else 0.0)
    shape["radius"] = lesion["radius_mm"] / n ** (1 / 3)  # equal total volume, before overlap, lobes and spikes
    # a ball around center_mm that holds the whole lesion (lobes can at most add lobulation * lobes)
    reach = shape["radius"] * max(lesion["axes"]) * (1 + lesion["lobulation"] * lesion["lobes"])
    shape["extent"] = (lesion["component_distance_mm"] * (n > 1) + reach
                       + lesion["spike_length_mm"] * (lesion["spikes"] > 0) + 1.0)
    return shape


def _lesion_masks(points: np.ndarray, lesion: Mapping[str, Any], shape: Mapping[str, Any]):
    """Boolean (lesion, necrotic core) arrays at ``points`` ``(3, ...)`` for a drawn shape."""
    rotation, axes, radius = shape["rotation"], np.asarray(lesion["axes"]), shape["radius"]
    width = lesion["lobe_width"]
    mean_bump = width / 2 * (1 - math.exp(-2 / width))  # mean of exp((cos - 1) / width) over the sphere
    core_scale = lesion["necrosis_fraction"] ** (1 / 3)
    length, half_width = lesion["spike_length_mm"], lesion["spike_width_mm"] / 2
    body = np.zeros(points.shape[1:], dtype=bool)
    core = np.zeros_like(body)
    for k, centre in enumerate(shape["centres"]):
        rel = points - centre[:, None, None, None]
        q = np.einsum("ji,j...->i...", rotation, rel) / axes[:, None, None, None]  # body frame, unit sphere
        r = np.sqrt(np.sum(q * q, axis=0))
        reach = np.full_like(r, radius)
        if len(shape["lobes"]) and lesion["lobulation"]:
            u = q / np.maximum(r, 1e-9)
            bumps = sum(np.exp((np.einsum("i,i...->...", d, u) - 1) / width) for d in shape["lobes"])
            reach *= np.maximum(1 + lesion["lobulation"] * (bumps - len(shape["lobes"]) * mean_bump), 0.1)
        body |= r <= reach
        if core_scale:
            core |= r <= reach * core_scale
        for d in shape["spikes"][shape["spike_owner"] == k]:
            surface = radius / np.linalg.norm(rotation.T @ d / axes)  # ellipsoid radius along d
            t = np.einsum("i,i...->...", d, rel)
            perp2 = np.sum(rel * rel, axis=0) - t * t
            taper = np.clip((surface + length - t) / max(length, 1e-9), 0.0, 1.0)
            body |= (t > 0) & (t <= surface + length) & (perp2 <= (half_width * taper) ** 2)
    return body, core


def render_phantom(spec: Mapping[str, Any], seed: int | Sequence[int]) -> tuple[sitk.Image, sitk.Image]:
    """Render a phantom spec (:data:`PHANTOM`, defaults filled in) as (float32 image, uint8 mask).

    A pure function of ``(spec, seed)``: the shape, the lesion texture, the background texture and the
    regions/gradient draw from four independent streams spawned from ``SeedSequence(seed)``, so changing the
    texture parameters does not move the lesion's outline.

    >>> image, mask = render_phantom({"grid": {"size": [24, 24, 24]}, "lesion": {"radius_mm": 6}}, seed=1)
    >>> image.GetSize(), image.GetOrigin(), int(sitk.GetArrayViewFromImage(mask).sum())
    ((24, 24, 24), (-11.5, -11.5, -11.5), 912)
    """
    spec = phantom_spec(spec)
    size, spacing, origin, direction = _geometry(spec["grid"])
    shape_rng, lesion_rng, background_rng, region_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    lesion, background = spec["lesion"], spec["background"]
    shape = _draw_shape(lesion, shape_rng)
    # evaluate the outline only in the index box around the lesion's bounding ball (direction is orthonormal)
    centre_index = direction.T @ (np.asarray(lesion["center_mm"]) - origin) / spacing
    lo = np.clip(np.floor(centre_index - shape["extent"] / spacing), 0, size).astype(int)
    hi = np.clip(np.ceil(centre_index + shape["extent"] / spacing) + 1, 0, size).astype(int)
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    points = _physical_points(spacing, origin, direction, lo, hi)
    body, core = (np.zeros(tuple(size[::-1]), dtype=bool) for _ in range(2))
    body[box], core[box] = _lesion_masks(points, lesion, shape)
    if not body.any():
        raise ConfigError(f"phantom: the lesion (center_mm={lesion['center_mm']}, radius_mm={lesion['radius_mm']}) "
                          "has no voxel on the grid")
    if body[[0, -1]].any() or body[:, [0, -1]].any() or body[:, :, [0, -1]].any():
        warnings.warn("phantom: the lesion touches the grid border and is cut", stacklevel=2)
    grid_shape, grid_spacing = body.shape, spacing[::-1]
    values = background["intensity"] + background["heterogeneity"] * textures.gaussian_random_field(
        grid_shape, grid_spacing, background["coarseness_mm"], background_rng)
    texture = textures.gaussian_random_field(grid_shape, grid_spacing, lesion["coarseness_mm"], lesion_rng)
    viable = lesion["intensity"] + lesion["heterogeneity"] * texture
    centre = lesion["center_mm"]
    if lesion["regions"] and lesion["region_contrast"]:
        viable[box] += lesion["region_contrast"] * textures.piecewise_regions(
            points, centre, lesion["radius_mm"], lesion["regions"], region_rng)
    if lesion["gradient"]:
        viable[box] += lesion["gradient"] * textures.linear_gradient(points, centre, lesion["radius_mm"], region_rng)
    values = np.where(body, viable, values)
    values = np.where(core, lesion["necrosis_intensity"] + lesion["necrosis_heterogeneity"] * texture, values)
    image = _set_geometry(sitk.GetImageFromArray(values.astype(np.float32)), spacing, origin, direction)
    mask = _set_geometry(sitk.GetImageFromArray(body.astype(np.uint8)), spacing, origin, direction)
    return image, mask


# -- scanners ---------------------------------------------------------------------------------------

_FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def load_scanner(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read and validate a scanner profile TOML; an unknown key raises ConfigError naming file and key."""
    return load(path, SCANNER, overrides)


def builtin_scanners() -> list[str]:
    """Names of the shipped scanner profiles."""
    return sorted(p.stem for p in SCANNER_DIR.glob("*.toml"))


def acquire(image: sitk.Image, mask: sitk.Image, profile: Mapping[str, Any],
            rng: np.random.Generator) -> tuple[sitk.Image, sitk.Image]:
    """Image a phantom with a scanner profile (:data:`SCANNER`): what that scanner would reconstruct.

    The phantom is blurred by the point-spread function combined with the integration over each output
    voxel (a box of the output voxel size, whose part the input voxel already integrates is removed), then
    resampled linearly to the scanner's grid over the same field of view (same centre and axes). The
    optional bias field multiplies the signal, noise (white, or correlated with ``noise.correlation_mm``) is
    added, and the calibration ``scale * x + offset`` is applied last. The mask is resampled by nearest
    neighbour. ``rng`` supplies the bias field and the noise.

    >>> image, mask = render_phantom({"grid": {"size": [20, 20, 20]}, "lesion": {"radius_mm": 5}}, 0)
    >>> profile = validate({"resolution": {"slice_mm": 2.5}, "noise": {"sd": 5}}, SCANNER)
    >>> scan, scan_mask = acquire(image, mask, profile, np.random.default_rng(0))
    >>> scan.GetSize(), scan.GetSpacing()
    ((20, 20, 8), (1.0, 1.0, 2.5))
    """
    spacing_in = np.asarray(image.GetSpacing())
    size_in = np.asarray(image.GetSize())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    res, psf = profile["resolution"], profile["psf"]
    spacing_out = np.array([res["pixel_mm"], res["pixel_mm"], res["slice_mm"]])
    psf_sigma = (np.asarray(psf["sigma_mm"], float) if psf["sigma_mm"]
                 else np.asarray(psf["fwhm_mm"] or [0.0] * 3, float) / _FWHM_PER_SIGMA)
    sigma = np.sqrt(psf_sigma ** 2 + np.maximum(spacing_out ** 2 - spacing_in ** 2, 0.0) / 12)
    blurred = gaussian_filter(sitk.GetArrayFromImage(image).astype(np.float64), (sigma / spacing_in)[::-1],
                              mode="nearest")
    size_out = np.floor((size_in - 1) * spacing_in / spacing_out + 1e-9).astype(int) + 1
    centre = np.asarray(image.GetOrigin()) + direction @ ((size_in - 1) * spacing_in / 2)
    origin_out = centre - direction @ ((size_out - 1) * spacing_out / 2)
    reference = _set_geometry(sitk.Image([int(v) for v in size_out], sitk.sitkFloat32), spacing_out, origin_out,
                              direction)
    source = sitk.GetImageFromArray(blurred)
    source.CopyInformation(image)
    values = sitk.GetArrayFromImage(sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                  sitk.sitkFloat64))
    grid_spacing = spacing_out[::-1]
    bias = profile["bias_field"]
    if bias["amplitude"]:
        values *= np.exp(bias["amplitude"] * textures.smooth_random_field(values.shape, grid_spacing,
                                                                          bias["length_mm"], rng))
    noise = profile["noise"]
    if noise["sd"]:
        values += noise["sd"] * textures.gaussian_random_field(values.shape, grid_spacing, noise["correlation_mm"],
                                                               rng)
    calibration = profile["calibration"]
    scan = sitk.GetImageFromArray((calibration["scale"] * values + calibration["offset"]).astype(np.float32))
    scan.CopyInformation(reference)
    scan_mask = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return scan, scan_mask


# -- cohorts ----------------------------------------------------------------------------------------

def _profile_path(ref: str, base: Path) -> Path:
    if not any(c in ref for c in "/\\") and not ref.endswith(".toml"):
        return SCANNER_DIR / f"{ref}.toml"
    path = Path(ref)
    return path if path.is_absolute() else base / path


def load_cohort_spec(path_or_dict: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = (), *,
                     base_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read (a path) or take (an inline table) a cohort spec, validate it and load its scanner profiles.

    Profile references are built-in names (``ct_sharp_1mm``) or paths, relative to the spec's folder (for
    an inline table: to ``base_dir``, default the working directory). The result is the validated spec plus
    ``_profiles`` (site name, the profile file's stem -> validated profile) and ``_source``.
    """
    if isinstance(path_or_dict, Mapping):
        source = "<inline cohort>"
        raw, _ = apply_overrides(path_or_dict, overrides)
        spec = validate(raw, COHORT, file=source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        source = str(path_or_dict)
        spec = load(path_or_dict, COHORT, overrides)
        base = Path(path_or_dict).resolve().parent
    profiles: dict[str, dict[str, Any]] = {}
    for i, ref in enumerate(spec["scanners"]["profiles"]):
        path = _profile_path(ref, base)
        if not path.is_file():
            raise ConfigError(f"{source}: scanners.profiles[{i}]: scanner profile not found: {path} "
                              f"(built-in: {', '.join(builtin_scanners())})")
        if path.stem in profiles:
            raise ConfigError(f"{source}: scanners.profiles[{i}]: site {path.stem!r} is listed twice")
        profiles[path.stem] = load_scanner(path)
    spec["_profiles"] = profiles
    spec["_source"] = source
    return spec


def cohort_field_check(value: Any) -> str | None:
    """The ``check`` of an experiment config's ``cases.cohort``: a path, or an inline table valid as COHORT."""
    if isinstance(value, str):
        return None
    if not isinstance(value, Mapping):
        return "expected a path to a cohort TOML or an inline table"
    try:
        validate(value, COHORT, file="inline cohort")
    except ConfigError as exc:
        return str(exc)
    return None


def _draw(dist: Mapping[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    kind = dist["distribution"]
    if kind == "constant":
        return np.full(n, dist["mean"])
    if kind == "normal":
        return rng.normal(dist["mean"], dist["sd"], n)
    if kind == "uniform":
        return rng.uniform(dist["low"], dist["high"], n)
    return dist["median"] * np.exp(rng.normal(0.0, dist["sigma"], n))


def _clip(values: np.ndarray, *bounds: tuple[float | None, float | None]) -> np.ndarray:
    for low, high in bounds:
        values = np.clip(values, -np.inf if low is None else low, np.inf if high is None else high)
    return values


def sample_subjects(spec: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Draw the subjects of a cohort (from :func:`load_cohort_spec`): id, covariates, ``truth_<latent>``
    and the scanner site(s) of each.

    Latent values are ``draw + sum(effects)``, clipped to the declared [min, max] and to the lesion
    parameter's valid range. The ``sites`` column holds a list of site names per subject.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_SUBJECTS]))
    n, prefix = spec["cohort"]["subjects"], spec["cohort"]["prefix"]
    table: dict[str, Any] = {SUBJECT: [f"{prefix}{i:03d}" for i in range(n)]}
    for cov in spec["covariates"]:
        if cov["levels"]:
            p = np.asarray(cov["probabilities"] or [1.0] * len(cov["levels"]), float)
            table[cov["name"]] = [str(v) for v in rng.choice(cov["levels"], size=n, p=p / p.sum())]
        else:
            table[cov["name"]] = _clip(_draw(cov, n, rng), (cov["min"], cov["max"]))
    for name, dist in spec["latent"].items():
        if dist is None:
            continue
        values = _draw(dist, n, rng)
        for effect in dist["effects"]:
            covariate = np.asarray(table[effect["covariate"]])
            values = values + effect["coef"] * (covariate == effect["level"] if effect["level"]
                                                else covariate - effect["center"])
        field = LESION.fields[name]
        table[schema.TRUTH_PREFIX + name] = _clip(values, (dist["min"], dist["max"]), (field.min, field.max))
    sites = list(spec["_profiles"])
    travelling = spec["scanners"]["travelling"]
    if spec["scanners"]["assignment"] == "balanced":
        order = rng.permutation(np.resize(np.arange(len(sites)), n - travelling))
    else:
        order = rng.integers(len(sites), size=n - travelling)
    table["sites"] = [list(sites)] * travelling + [[sites[k]] for k in order]
    return pd.DataFrame(table)


def _subject_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, _STREAM_PHANTOM, index]).generate_state(1)[0])


def _scan_rng(subject_seed: int, site: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([subject_seed, int(stable_hash(site, 8), 16)]))


def subject_phantom(spec: Mapping[str, Any], truth: Mapping[str, float]) -> dict[str, Any]:
    """The phantom spec of one subject: the cohort's grid, background and lesion with its latent values."""
    lesion = dict(spec["lesion"])
    lesion.update({name: float(truth[schema.TRUTH_PREFIX + name]) for name in LATENTS
                   if schema.TRUTH_PREFIX + name in truth})
    return {"grid": dict(spec["grid"]), "lesion": lesion, "background": dict(spec["background"])}


def simulate_cohort(spec: Mapping[str, Any], out_dir: str | os.PathLike, *, seed: int | None = None,
                    progress: bool | None = None) -> pd.DataFrame:
    """Simulate a cohort (:data:`COHORT`, or what :func:`load_cohort_spec` returns) and write it to ``out_dir``.

    Writes ``images/<case_id>_image.<ext>`` and ``_mask.<ext>``, ``cases.csv`` (paths relative to it, the
    format ``harmony extract`` reads) and ``cohort.json`` (the resolved spec and, per subject, its phantom
    spec and seed: enough to re-render any case). Returns the cases table (schema.CASES, absolute paths):
    ``case_id, site, image, mask, subject``, the covariates, ``truth_<latent>`` for every declared latent and
    ``truth_volume_mm3`` (the lesion volume on the phantom grid). A subject imaged on several scanners
    (travelling) has one case per scanner, ``<subject>-<site>``. ``seed`` overrides ``cohort.seed``.
    """
    from harmony.cases import write_cases

    if "_profiles" not in spec:
        spec = load_cohort_spec(spec)
    seed = spec["cohort"]["seed"] if seed is None else int(seed)
    out_dir = Path(out_dir)
    extension = _IMAGE_EXTENSIONS[spec["cohort"]["format"]]
    subjects = sample_subjects(spec, seed)
    info_columns = [c for c in subjects.columns if c != "sites"]
    rows, recorded = [], []
    records = subjects.to_dict("records")
    for index, subject in enumerate(progress_bar(records, desc="phantoms", unit="subject", progress=progress)):
        phantom, phantom_seed = subject_phantom(spec, subject), _subject_seed(seed, index)
        try:
            image, mask = render_phantom(phantom, phantom_seed)
        except ConfigError as exc:  # a drawn latent value outside what a lesion allows, e.g. radius 0
            raise ConfigError(f"{spec['_source']}: subject {subject[SUBJECT]!r}: {exc}") from None
        voxel_mm3 = float(np.prod(image.GetSpacing()))
        volume = float(sitk.GetArrayViewFromImage(mask).sum()) * voxel_mm3
        for site in subject["sites"]:
            case_id = subject[SUBJECT] if len(subject["sites"]) == 1 else f"{subject[SUBJECT]}-{site}"
            scan, scan_mask = acquire(image, mask, spec["_profiles"][site], _scan_rng(phantom_seed, site))
            if not sitk.GetArrayViewFromImage(scan_mask).any():
                raise ConfigError(f"{spec['_source']}: subject {subject[SUBJECT]!r}: the lesion vanishes on the "
                                  f"grid of scanner {site!r} (radius or slice thickness too small)")
            image_path, mask_path = write_case(scan, scan_mask, out_dir / "images", case_id, extension)
            rows.append({schema.CASE_ID: case_id, schema.SITE: site, schema.IMAGE: str(image_path),
                         schema.MASK: str(mask_path), **{c: subject[c] for c in info_columns},
                         schema.TRUTH_PREFIX + "volume_mm3": volume})
        recorded.append({SUBJECT: subject[SUBJECT], "seed": phantom_seed, "sites": subject["sites"],
                         "phantom": phantom})
    cases = schema.CASES.validate(pd.DataFrame(rows), source="simulate_cohort")
    write_cases(cases, out_dir / "cases.csv")
    write_json(out_dir / "cohort.json", {"seed": seed, "spec": spec, "subjects": recorded})
    logger.info("simulated %d cases of %d subjects in %s", len(cases), len(records), out_dir)
    return cases
