"""Simulated cohorts: subjects with known biology (latents, covariates) imaged on several scanners."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import write_cases
from harmony.core.config import Field, Section, apply_overrides, load, validate
from harmony.core.errors import ConfigError
from harmony.core.files import stable_hash, write_json
from harmony.core.progress import progress_bar
from harmony.core.resources import builtin_path, is_bare_name, resolve
from harmony.phantoms.digital import write_case
from harmony.phantoms.render import BACKGROUND, GRID, LESION, _positive, render_phantom
from harmony.phantoms.scanners import (
    _IMAGE_EXTENSIONS,
    acquire,
    builtin_scanners,
    load_scanner,
)

logger = logging.getLogger(__name__)


#: Column of a simulated cases table naming the subject (a travelling subject has one case per scanner).
SUBJECT = "subject"
_STREAM_SUBJECTS, _STREAM_PHANTOM = 1, 2


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
    """Read (a path, or a built-in name such as ``cohort_demo``) or take (an inline table) a cohort spec, validate
    it and load its scanner profiles.

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
        path = resolve(path_or_dict, "cohort")
        source = str(path)
        spec = load(path, COHORT, overrides)
        base = path.resolve().parent
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
