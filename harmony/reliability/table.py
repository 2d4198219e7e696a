"""The reliability table of a features table: every metric per feature and perturbation kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.core.errors import SchemaError
from harmony.core.progress import progress_bar
from harmony.core.schema import (
    CASE_ID,
    CATEGORY,
    CI_HIGH,
    CI_LOW,
    ESTIMATE,
    FEATURE,
    KIND,
    METRIC,
    N_CASES,
    N_VARIANTS,
    ORIGINAL,
    PERTURBATION,
    REASON,
    REPEAT,
    STABLE,
    VALUE,
    VARIANT_ID,
)
from harmony.reliability.agreement import _dense, _factorize
from harmony.reliability.arrays import _group_results, _pairwise, _Results
from harmony.reliability.guards import check_homogeneous, check_study_size
from harmony.reliability.settings import ALL, DEFAULT_SEED, resolve_settings
from harmony.reliability.verdicts import _classify

__all__ = ["reliability_table", "PAIRWISE", "pairwise_ccc", "INPUT_COLUMNS"]

#: The columns of the features table reliability reads (the site is not one of them).
INPUT_COLUMNS = [CASE_ID, VARIANT_ID, REPEAT, FEATURE, VALUE]


def _rows(features: np.ndarray, perturbation: str, n_conditions: int, res: _Results,
          settings: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
    frames = []
    for metric, values in res.values.items():
        cats, stable, reasons = _classify(metric, perturbation, values, res.undefined[metric], settings)
        frames.append(pd.DataFrame({
            FEATURE: features, **(extra or {PERTURBATION: perturbation}), METRIC: metric,
            ESTIMATE: values[0], CI_LOW: values[1], CI_HIGH: values[2], N_CASES: res.n_cases[metric],
            N_VARIANTS: n_conditions, CATEGORY: cats, STABLE: stable, REASON: reasons,
        }))
    return pd.concat(frames, ignore_index=True)


class _Design:
    """The features table as (features, cases, conditions), each condition's variant, repeat and kind."""

    def __init__(self, features: pd.DataFrame, variants: pd.DataFrame | None) -> None:
        features = schema.FEATURES.subset(INPUT_COLUMNS).validate(features, "reliability input")
        vcodes, vlabels = _factorize(features, VARIANT_ID)
        # one integer per (variant, repeat), sorting as the pairs would: np.unique over rows is 4x slower here
        repeats = features[REPEAT].to_numpy(dtype=np.int64)
        low = int(repeats.min()) if len(repeats) else 0
        span = int(repeats.max()) - low + 1 if len(repeats) else 1
        keys, cond_code = np.unique(vcodes.astype(np.int64) * span + (repeats - low), return_inverse=True)
        self.variant = vlabels[keys // span]
        self.repeat = keys % span + low
        (fcodes, self.feature_names), (ccodes, cases) = _factorize(features, FEATURE), _factorize(features, CASE_ID)
        self.cases = cases
        labels = (self.feature_names, cases, np.array([f"{v} repeat {r}" for v, r in zip(self.variant, self.repeat)]))
        self.x = _dense((fcodes, ccodes, cond_code.ravel()), labels, features[VALUE].to_numpy(dtype=float),
                        (FEATURE, CASE_ID, "condition"))
        if ORIGINAL not in set(self.variant):
            raise SchemaError(f"features table has no rows with {VARIANT_ID} {ORIGINAL!r}; "
                              "reliability compares every variant with the original")
        self.kind = self._kinds(variants)
        originals = np.flatnonzero(self.variant == ORIGINAL)
        self.reference = int(originals[np.argmin(self.repeat[originals])])

    def _kinds(self, variants: pd.DataFrame | None) -> np.ndarray:
        if variants is None:
            return np.where(self.variant == ORIGINAL, ORIGINAL, ALL).astype(object)
        variants = schema.VARIANTS.validate(variants, "reliability variants")
        kinds = dict(zip(variants[VARIANT_ID], variants[KIND]))
        unknown = sorted(set(self.variant) - set(kinds) - {ORIGINAL})
        if unknown:
            raise SchemaError(f"variants table has no row for {VARIANT_ID} {unknown[0]!r} "
                              f"({len(unknown)} variant(s) of the features table missing)")
        return np.array([ORIGINAL if v == ORIGINAL else kinds[v] for v in self.variant], dtype=object)

    def groups(self) -> dict[str, np.ndarray]:
        """Condition indices of each perturbation group: every kind (with the original) and ``all``."""
        perturbed = self.kind != ORIGINAL
        kinds = sorted(set(self.kind[perturbed]) - {ALL}, key=lambda k: ("+" in k, k))
        out = {k: np.flatnonzero(self.kind == k) for k in kinds}
        out[ALL] = np.flatnonzero(perturbed)
        return {k: np.concatenate([[self.reference], idx]) for k, idx in out.items()}


def reliability_table(features: pd.DataFrame, variants: pd.DataFrame | None = None, *,
                      settings: Mapping[str, Any] | None = None, rng: np.random.Generator | None = None,
                      progress: bool | None = False, cases: pd.DataFrame | None = None,
                      **overrides: Any) -> pd.DataFrame:
    """Every reliability metric of every feature under every perturbation group (schema.RELIABILITY).

    A study with fewer cases than ``min_cases`` is refused; fewer than ``recommended_cases`` (Koo & Li
    2016: 30), or a group with fewer than ``recommended_conditions`` conditions, or cases of several
    modalities or label meanings, gives a :class:`~harmony.core.notices.HarmonyWarning`
    (:mod:`harmony.reliability.guards`).

    Parameters
    ----------
    features : DataFrame
        The features table (schema.FEATURES). Missing or non-finite values are missing tasks.
    variants : DataFrame, optional
        The variants table (schema.VARIANTS), for each variant's ``kind``. Without it every non-original
        variant is of kind ``all``.
    settings : mapping, optional
        A ``[reliability]`` section (:data:`SETTINGS`); keyword ``overrides`` (e.g. ``icc="ICC(C,1)"``)
        are merged over it.
    rng : numpy.random.Generator, optional
        Draws of the overall-CCC bootstrap; default ``numpy.random.default_rng(DEFAULT_SEED)``.
    progress : bool, optional
        progress bar over the perturbation groups (None: only on a terminal).
    cases : DataFrame, optional
        The cases table, to flag mixed modalities (its ``modality`` column, or the images' DICOM tag) or
        label meanings (``label_meaning``).

    Returns
    -------
    DataFrame
        One row per (feature, perturbation, metric); ``perturbation`` is a variant kind (its variants
        plus the original) or ``all``; metrics are the six ICC forms, ``CCC`` (overall), ``CoV`` and
        ``range``; ``n_variants`` counts the conditions (original included); ``reason`` explains the
        category.

    Raises
    ------
    SchemaError
        ``features`` or ``variants`` does not follow its contract, the features table has no ``original``
        rows, a variant has no row in ``variants``, or a (feature, case, variant, repeat) is repeated.
    ConfigError
        ``settings`` (with the overrides) do not validate.
    StudyError
        Fewer cases with values than ``min_cases``.

    See Also
    --------
    harmony.icc : the six ICC forms on any long table.
    harmony.feature_verdicts : one stable/unstable verdict per feature from this table.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> truth = rng.normal(size=8)
    >>> rows = [(f"c{i}", "s", v, 0, "f", truth[i] + e * rng.normal())
    ...         for v, e in (("original", 0), ("n1", 0.1), ("n2", 0.1)) for i in range(8)]
    >>> feats = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> kinds = pd.DataFrame({"variant_id": ["original", "n1", "n2"], "kind": ["original", "noise", "noise"],
    ...                       "params": "[]", "seed": 0})
    >>> table = reliability_table(feats, kinds, bootstrap=200, recommended_cases=8)
    >>> icc_a1 = table[table["metric"] == "ICC(A,1)"].reset_index(drop=True)
    >>> icc_a1[["perturbation", "estimate", "ci_low", "category", "stable"]].round(3)
      perturbation  estimate  ci_low   category  stable
    0        noise     0.986   0.956  excellent    True
    1          all     0.986   0.956  excellent    True
    """
    settings = resolve_settings(settings, **overrides)
    rng = np.random.default_rng(DEFAULT_SEED) if rng is None else rng
    design = _Design(features, variants)
    groups = design.groups()
    check_study_size(design.cases, {name: len(c) for name, c in groups.items()}, settings)
    check_homogeneous(cases, design.cases)
    frames = []
    for name, conditions in progress_bar(groups.items(), desc="reliability", unit="group",
                                         progress=progress):
        res = _group_results(design.x[:, :, conditions], settings, rng)
        frames.append(_rows(design.feature_names, name, len(conditions), res, settings))
    return schema.RELIABILITY.validate(pd.concat(frames, ignore_index=True), "reliability")


#: The table of :func:`pairwise_ccc`.
PAIRWISE = schema.TableSpec(
    "ccc_pairwise",
    schema._cols((FEATURE, "str"), (VARIANT_ID, "str"), (REPEAT, "int64"), (KIND, "str"), (METRIC, "str"),
                 (ESTIMATE, "float64", True), (CI_LOW, "float64", True), (CI_HIGH, "float64", True),
                 (N_CASES, "int64"), (N_VARIANTS, "int64"), (CATEGORY, "str"), (STABLE, "bool"),
                 (REASON, "str")),
    key=(FEATURE, VARIANT_ID, REPEAT),
    doc="Lin's CCC of each (variant, repeat) against the original, per feature.",
)


def pairwise_ccc(features: pd.DataFrame, variants: pd.DataFrame | None = None, *,
                 settings: Mapping[str, Any] | None = None, **overrides: Any) -> pd.DataFrame:
    """Lin's CCC of every (variant, repeat) condition against the original, per feature (:data:`PAIRWISE`).

    The original is its lowest repeat; intervals are Lin's z-transform intervals; categories and flags
    follow the CCC settings (``ccc_thresholds``, ``ccc_min``, ``judge_on``).

    Parameters
    ----------
    features : DataFrame
        The features table (schema.FEATURES).
    variants : DataFrame, optional
        The variants table, for each variant's ``kind``.
    settings : mapping, optional
        A ``[reliability]`` section; keyword ``overrides`` are merged over it.

    Returns
    -------
    DataFrame
        :data:`PAIRWISE`: one row per (feature, variant, repeat) other than the original.

    Raises
    ------
    SchemaError
        As :func:`reliability_table`.
    ConfigError
        ``settings`` do not validate.

    Examples
    --------
    Six cases shifted by 0.5: Lin's CCC is 2 * 35/12 / (2 * 35/12 + 0.5 ** 2) = 0.959, whose lower bound
    is below the 0.90 of ``moderate``:

    >>> rows = [(f"c{i}", "s", v, 0, "f", float(i) + d) for v, d in (("original", 0.0), ("shifted", 0.5))
    ...         for i in range(6)]
    >>> table = pairwise_ccc(pd.DataFrame(rows, columns=schema.FEATURES.names))
    >>> table[["variant_id", "estimate", "category"]].round(3)
      variant_id  estimate category
    0    shifted     0.959     poor
    """
    settings = resolve_settings(settings, **overrides)
    design = _Design(features, variants)
    frames = []
    for c in range(len(design.variant)):
        if c == design.reference:
            continue
        res = _pairwise(design.x[:, :, [design.reference, c]], settings["confidence"])
        extra = {VARIANT_ID: design.variant[c], REPEAT: design.repeat[c], KIND: design.kind[c]}
        frames.append(_rows(design.feature_names, f"{design.variant[c]} (repeat {design.repeat[c]})", 2, res,
                            settings, extra))
    if not frames:
        return PAIRWISE.empty()
    return PAIRWISE.validate(pd.concat(frames, ignore_index=True), "ccc_pairwise")
