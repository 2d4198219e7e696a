"""What a phantom, a scanner profile and a cohort spec are: their config sections, and reading them.

Only the config language is needed here (no imaging), so ``harmony validate`` checks a cohort without loading
the imaging stack; :mod:`~harmony.phantoms.render`, :mod:`~harmony.phantoms.scanners` and
:mod:`~harmony.phantoms.cohort` do the work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harmony.core import schema
from harmony.core.config import Field, Section, apply_overrides, load, validate
from harmony.core.errors import ConfigError
from harmony.core.files import PathError, path_component
from harmony.core.resources import builtin_names, builtin_path, is_bare_name, resolve

__all__ = ["GRID", "LESION", "BACKGROUND", "PHANTOM", "phantom_spec", "SCANNER", "load_scanner", "builtin_scanners",
           "LATENTS", "COHORT", "load_cohort_spec", "cohort_field_check", "SUBJECT"]

#: Column of a simulated cases table naming the subject (a travelling subject has one case per scanner).
SUBJECT = "subject"


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


#: The ``[grid]`` table of a phantom spec.
GRID = Section({
    "size": Field(list, [64, 64, 64], item=Field(int, min=1), check=_xyz, doc="Voxels along x, y, z."),
    "spacing_mm": _vector([1.0, 1.0, 1.0], min=0.0, min_exclusive=True, doc="Voxel size along x, y, z (mm)."),
    "origin_mm": _vector([], _xyz_or_empty, doc="Centre of the first voxel; [] centres the grid on 0."),
    "direction": Field(list, [], item=Field(float), check=_direction_check, doc="Row-major axes; [] = identity."),
}, doc="The phantom's high-resolution grid.")


#: The ``[lesion]`` table of a phantom spec.
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


#: The ``[background]`` table of a phantom spec.
BACKGROUND = Section({
    "intensity": Field(float, 40.0, doc="Mean intensity of the background tissue."),
    "heterogeneity": Field(float, 5.0, min=0.0, doc="Texture amplitude (SD)."),
    "coarseness_mm": Field(float, 4.0, min=0.0, doc="Texture correlation length (mm)."),
})


#: One phantom: its grid, lesion and background tissue.
PHANTOM = Section({"grid": GRID, "lesion": LESION, "background": BACKGROUND})


def phantom_spec(data: Mapping[str, Any] | None = None, *, file: str = "<phantom spec>") -> dict[str, Any]:
    """A validated phantom spec with every default filled in.

    Parameters
    ----------
    data : mapping, optional
        A phantom spec: any of the tables ``grid``, ``lesion`` and ``background`` (:data:`PHANTOM`); absent
        keys take their defaults (a 64 mm cube of 1 mm voxels, a 10 mm sphere of intensity 100 in a
        background of 40).
    file : str, default "<phantom spec>"
        Where ``data`` came from, for the messages.

    Returns
    -------
    dict
        The validated spec, every key filled in.

    Raises
    ------
    ConfigError
        An unknown key, a wrong type or an out-of-range value, named with its dotted key.

    Examples
    --------
    >>> phantom_spec({"lesion": {"radius_mm": 5}})["grid"]["size"]
    [64, 64, 64]
    >>> phantom_spec({"lesion": {"radius_mm": 5}})["lesion"]["radius_mm"]
    5.0
    >>> phantom_spec({"lesion": {"radius": 5}})
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: <phantom spec>: lesion.radius: unknown key (known: ...), got 5
    """
    return validate(dict(data or {}), PHANTOM, file=file)


# -- specs (validated with the config DSL) ----------------------------------------------------------

#: File extension of each image format a cohort can be written in.
_IMAGE_EXTENSIONS = {"nrrd": ".nrrd", "nifti": ".nii.gz"}


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


def load_scanner(profile: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read and validate a scanner profile: a TOML file, or the name of a built-in one.

    Parameters
    ----------
    profile : str or os.PathLike
        A path to a profile TOML (:data:`SCANNER`), or a built-in name (:func:`builtin_scanners`).
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts applied before validation, e.g. ``["noise.sd=10"]``.

    Returns
    -------
    dict
        The validated profile, every key filled in.

    Raises
    ------
    ConfigError
        An unknown key or a bad value (naming the file and the key), or an unknown name (listing the
        built-in ones).

    Examples
    --------
    >>> load_scanner("ct_sharp_1mm")["noise"]["sd"]
    22.0
    >>> load_scanner("ct_sharp_1mm", ["noise.sd=5"])["noise"]["sd"]
    5.0
    """
    return load(resolve(profile, "scanner"), SCANNER, overrides)


def builtin_scanners() -> list[str]:
    """Names of the shipped scanner profiles (``harmony examples list``).

    Returns
    -------
    list of str
        Sorted; each is accepted by :func:`load_scanner` and in a cohort spec's ``scanners.profiles``.

    Examples
    --------
    >>> "ct_sharp_1mm" in builtin_scanners()
    True
    """
    return builtin_names("scanner")


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


# -- cohorts ----------------------------------------------------------------------------------------

def _profile_path(ref: str, base: Path) -> Path:
    """A scanner profile named in a cohort spec: a built-in name, or a path relative to the spec's folder."""
    if is_bare_name(ref):
        return builtin_path("scanner", ref)
    path = Path(ref)
    return path if path.is_absolute() else base / path


def load_cohort_spec(path_or_dict: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = (), *,
                     base_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read or take a cohort spec, validate it and load its scanner profiles.

    Parameters
    ----------
    path_or_dict : str, os.PathLike or mapping
        A cohort TOML (:data:`COHORT`), the name of a built-in one (``cohort_demo``), or an inline table.
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts applied before validation, e.g. ``["cohort.subjects=90"]``.
    base_dir : str or os.PathLike, optional
        For an inline table: the folder its profile paths are relative to (default the working directory).

    Returns
    -------
    dict
        The validated spec plus ``_profiles`` (site name, the profile file's stem -> validated profile) and
        ``_source`` (the file, or ``"<inline cohort>"``).

    Raises
    ------
    ConfigError
        The spec does not validate, or a profile is unknown, missing, invalid or listed twice. Profile
        references are built-in names (``ct_sharp_1mm``) or paths, relative to the spec's folder.

    Examples
    --------
    >>> spec = load_cohort_spec({"scanners": {"profiles": ["ct_sharp_1mm", "ct_smooth_5mm"]}})
    >>> spec["cohort"]["subjects"], list(spec["_profiles"])
    (20, ['ct_sharp_1mm', 'ct_smooth_5mm'])
    >>> load_cohort_spec({"scanners": {"profiles": ["ct_sharp"]}})
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: <inline cohort>: scanners.profiles[0]: ...
    """
    if isinstance(path_or_dict, Mapping):
        source = "<inline cohort>"
        raw, _ = apply_overrides(path_or_dict, overrides)
        spec = validate(raw, COHORT, file=source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = resolve(path_or_dict, "cohort")
        source = str(path)
        spec = load(path, COHORT, overrides)
        base = path.resolve().parent
    try:  # subject ids name the image files: they never leave the output folder
        path_component(f"{spec['cohort']['prefix']}000", "cohort.prefix (subject ids <prefix>000, ...)")
    except PathError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    profiles: dict[str, dict[str, Any]] = {}
    for i, ref in enumerate(spec["scanners"]["profiles"]):
        try:
            path = _profile_path(ref, base)
        except ConfigError as exc:
            raise ConfigError(f"{source}: scanners.profiles[{i}]: {exc}") from None
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
    """The ``check`` of an experiment config's ``cases.cohort``: a path, or an inline table valid as COHORT.

    Parameters
    ----------
    value : object
        The value of ``cases.cohort``.

    Returns
    -------
    str or None
        The reason it is refused, or ``None`` when it is a path or a valid table.

    Examples
    --------
    >>> cohort_field_check("phantoms/cohort_demo.toml") is None
    True
    >>> cohort_field_check(3)
    'expected a path to a cohort TOML or an inline table'
    """
    if isinstance(value, str):
        return None
    if not isinstance(value, Mapping):
        return "expected a path to a cohort TOML or an inline table"
    try:
        validate(value, COHORT, file="inline cohort")
    except ConfigError as exc:
        return str(exc)
    return None


