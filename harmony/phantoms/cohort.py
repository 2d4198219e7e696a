"""Simulated cohorts: subjects with known biology (latents, covariates) imaged on several scanners."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import write_cases
from harmony.core.errors import ConfigError
from harmony.core.files import stable_hash, write_json
from harmony.core.images import write_case
from harmony.core.progress import progress_bar
from harmony.phantoms.render import render_phantom
from harmony.phantoms.scanners import acquire
from harmony.phantoms.specs import (
    _IMAGE_EXTENSIONS,
    LATENTS,
    LESION,
    SUBJECT,
    load_cohort_spec,
)

__all__ = ["sample_subjects", "subject_phantom", "simulate_cohort"]

logger = logging.getLogger(__name__)
_STREAM_SUBJECTS, _STREAM_PHANTOM = 1, 2


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
    """Draw the subjects of a cohort: id, covariates, ``truth_<latent>`` and the scanner site(s) of each.

    Latent values are ``draw + sum(effects)``, clipped to the declared [min, max] and to the lesion
    parameter's valid range.

    Parameters
    ----------
    spec : mapping
        What :func:`load_cohort_spec` returns.
    seed : int
        The cohort's seed; the subjects are a pure function of ``(spec, seed)``.

    Returns
    -------
    DataFrame
        One row per subject: ``subject``, the covariates, ``truth_<latent>`` for every declared latent, and
        ``sites`` (a list of site names: every site for a travelling subject).

    Examples
    --------
    >>> spec = load_cohort_spec({"cohort": {"subjects": 4}, "scanners": {"profiles": ["ct_sharp_1mm", "ct_smooth_5mm"],
    ...                                                                "travelling": 1}})
    >>> sample_subjects(spec, seed=0)["sites"].map(len).tolist()
    [2, 1, 1, 1]
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
    """The phantom spec of one subject: the cohort's grid, background and lesion with its latent values.

    Parameters
    ----------
    spec : mapping
        A validated cohort spec.
    truth : mapping of str to float
        The subject's row of :func:`sample_subjects` (its ``truth_<latent>`` values).

    Returns
    -------
    dict
        A phantom spec for :func:`harmony.render_phantom`.

    Examples
    --------
    >>> spec = load_cohort_spec({"scanners": {"profiles": ["ct_sharp_1mm"]}})
    >>> subject_phantom(spec, {"truth_radius_mm": 7.5})["lesion"]["radius_mm"]
    7.5
    """
    lesion = dict(spec["lesion"])
    lesion.update({name: float(truth[schema.TRUTH_PREFIX + name]) for name in LATENTS
                   if schema.TRUTH_PREFIX + name in truth})
    return {"grid": dict(spec["grid"]), "lesion": lesion, "background": dict(spec["background"])}


def simulate_cohort(spec: Mapping[str, Any], out_dir: str | os.PathLike, *, seed: int | None = None,
                    progress: bool | None = None) -> pd.DataFrame:
    """Simulate a cohort of phantoms imaged on several scanners and write it to ``out_dir``.

    Each subject's lesion is rendered (:func:`harmony.render_phantom`) with its drawn latent values, then
    imaged with its scanner's profile (:func:`harmony.acquire`). Writes ``images/<case_id>_image.<ext>`` and
    ``_mask.<ext>``, ``cases.csv`` (paths relative to it, the format ``harmony extract`` reads) and
    ``cohort.json`` (the resolved spec and, per subject, its phantom spec and seed: enough to re-render any
    case).

    Parameters
    ----------
    spec : mapping
        A cohort spec (:data:`COHORT`) as an inline table, or what :func:`load_cohort_spec` returns.
    out_dir : str or os.PathLike
        Where to write the cohort (created when absent).
    seed : int, optional
        Overrides ``cohort.seed``.
    progress : bool, optional
        A progress bar over the subjects (``None``: only on a terminal).

    Returns
    -------
    DataFrame
        The cases table (:data:`harmony.core.schema.CASES`, absolute paths): ``case_id, site, image, mask,
        subject``, the covariates, ``truth_<latent>`` for every declared latent and ``truth_volume_mm3`` (the
        lesion volume on the phantom grid). A subject imaged on several scanners (travelling) has one case
        per scanner, ``<subject>-<site>``.

    Raises
    ------
    ConfigError
        The spec does not validate, a subject's drawn lesion is impossible, or a lesion vanishes on a
        scanner's grid; naming the spec and the subject.

    Examples
    --------
    >>> import tempfile
    >>> spec = {"cohort": {"subjects": 2}, "grid": {"size": [24, 24, 24]}, "lesion": {"radius_mm": 5},
    ...         "scanners": {"profiles": ["ct_sharp_1mm", "ct_smooth_5mm"]}}
    >>> with tempfile.TemporaryDirectory() as out:
    ...     cases = simulate_cohort(spec, out, seed=1)
    ...     print(sorted(cases["site"]), sorted(p.name for p in Path(out).iterdir()))
    ['ct_sharp_1mm', 'ct_smooth_5mm'] ['cases.csv', 'cohort.json', 'images']
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
