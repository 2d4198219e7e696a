"""Thin adapters: every harmonizer behind one interface, fitted on training subjects and applied to held-back ones.

An adapter is a function ``(train, test, smooth) -> (train_out, test_out)`` of two
:class:`~harmony.harmonize.benchmark.cohorts.Cohort` splits, where ``smooth`` names the continuous covariates a
method may model nonlinearly. harmony's methods come from the registry
(:func:`harmony.harmonize.methods.make_harmonizer`), with ComBat's feature transforms; the peers are
neuroCombat (``neuroCombat`` on the training subjects; its ``neuroCombatFromTraining`` fails on numpy 2 (it calls
``int()`` on a one-element array), so the held-back subjects get neuroCombat's estimates through that function's
formula, ignoring their covariates as it does)
and combatlearn (its ComBat with methods ``fortin``, ``chen`` = CovBat, and ``gam``), each when installed;
neuroHarmonize (``harmonizationLearn`` and ``harmonizationApply``, linear and with the smooth covariates as GAM
terms) when a Python that has it is given, in that environment (:mod:`~harmony.harmonize.benchmark.external`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from harmony.core.errors import HarmonyError
from harmony.harmonize.benchmark.cohorts import Cohort
from harmony.harmonize.benchmark.external import run_neuroharmonize
from harmony.harmonize.methods import REGISTRY, make_harmonizer

__all__ = ["ADAPTERS", "NEUROHARMONIZE", "PEERS", "NotApplicable", "available_methods", "harmonize_split"]

Adapter = Callable[[Cohort, Cohort, list[str]], tuple[np.ndarray, np.ndarray]]
#: An adapter of a peer that runs in a Python of its own: that Python first.
ExternalAdapter = Callable[[str, Cohort, Cohort, list[str]], tuple[np.ndarray, np.ndarray]]


class NotApplicable(HarmonyError):
    """The method does not apply to this cohort (e.g. a log transform of non-positive values)."""


def _covariates(cohort: Cohort) -> pd.DataFrame:
    """Covariates a harmonizer is told: constant columns (a controls-only fit's group) are dropped."""
    keep = [c for c in cohort.covariates.columns if cohort.covariates[c].nunique() > 1]
    return cohort.covariates[keep]


def _harmony(method: str, transform: str | None = None) -> Adapter:
    def adapter(train: Cohort, test: Cohort, smooth: list[str]) -> tuple[np.ndarray, np.ndarray]:
        several = REGISTRY[method].several_batches
        if method == "nested" and train.batches.shape[1] < 2:
            raise NotApplicable("nested needs several batch variables")
        if transform == "log" and (np.min(train.X) <= 0 or np.min(test.X) <= 0):
            raise NotApplicable("log needs positive values")
        covariates = _covariates(train)
        options = {}
        if method == "gam":
            options = {"smooth": [c for c in smooth if c in covariates.columns]}
            if not options["smooth"]:
                raise NotApplicable("gam needs a continuous covariate")
        held_covariates = test.covariates[covariates.columns]
        if method == "gam":  # a spline is not extrapolated: held-back values are clamped to the training range
            held_covariates = held_covariates.assign(**{c: held_covariates[c].clip(covariates[c].min(),
                                                                                   covariates[c].max())
                                                        for c in options["smooth"]})
        common = {"feature_transform": transform} if transform else {}
        model = make_harmonizer(method, common, options, batch_columns=list(train.batches.columns))

        def batch(c: Cohort):
            return c.batches if several else c.site

        out = model.fit_transform(train.X, batch=batch(train), covariates=covariates)
        held = model.transform(test.X, batch=batch(test), covariates=held_covariates)
        return np.asarray(out, float), np.asarray(held, float)
    return adapter


def _none(train: Cohort, test: Cohort, smooth: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return train.X.copy(), test.X.copy()


def _neurocombat(train: Cohort, test: Cohort, smooth: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from neuroCombat import neuroCombat

    covariates = _covariates(train)
    covars = covariates.assign(batch=train.site)
    categorical = [c for c in covariates.columns if not pd.api.types.is_numeric_dtype(covariates[c])]
    continuous = [c for c in covariates.columns if c not in categorical]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        fit = neuroCombat(dat=train.X.T, covars=covars, batch_col="batch", categorical_cols=categorical or None,
                          continuous_cols=continuous or None)
    est = fit["estimates"]
    which = np.searchsorted(np.asarray(est["batches"], dtype=str), test.site.astype(str))
    stand_mean = est["stand.mean"][:, 0] + est["mod.mean"].mean(axis=1)
    sd = np.sqrt(est["var.pooled"][:, 0])
    s = (test.X - stand_mean) / sd
    held = (s - est["gamma.star"][which]) / np.sqrt(est["delta.star"][which]) * sd + stand_mean
    return np.asarray(fit["data"]).T, held


def _combatlearn(method: str) -> Adapter:
    def adapter(train: Cohort, test: Cohort, smooth: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from combatlearn import ComBat as PeerComBat

        covariates = _covariates(train)
        categorical = [c for c in covariates.columns if not pd.api.types.is_numeric_dtype(covariates[c])]
        continuous = [c for c in covariates.columns if c not in categorical]
        if method == "gam" and not [c for c in smooth if c in continuous]:
            raise NotApplicable("gam needs a continuous covariate")
        n = len(train.X)
        index = pd.RangeIndex(n + len(test.X))
        every = pd.concat([covariates, test.covariates[covariates.columns]], ignore_index=True)
        model = PeerComBat(batch=pd.Series(np.concatenate([train.site, test.site]), index=index), method=method,
                           discrete_covariates=every[categorical] if categorical else None,
                           continuous_covariates=every[continuous] if continuous else None,
                           smooth_terms=[c for c in smooth if c in continuous] if method == "gam" else None)
        out = model.fit_transform(pd.DataFrame(train.X, index=index[:n]))
        held = model.transform(pd.DataFrame(test.X, index=index[n:]))
        return np.asarray(out, float), np.asarray(held, float)
    return adapter


def _numeric(train: pd.DataFrame, test: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Covariates as numbers (neuroHarmonize takes no categories): a category is one-hot, its first level dropped."""
    names, columns = [], []
    for c in train.columns:
        if pd.api.types.is_numeric_dtype(train[c]):
            names.append(c)
            columns.append((train[c].to_numpy(float), test[c].to_numpy(float)))
            continue
        seen, new = train[c].astype(str), test[c].astype(str)
        for level in sorted(seen.unique())[1:]:
            names.append(f"{c}={level}")
            columns.append(((seen == level).to_numpy(float), (new == level).to_numpy(float)))
    pair = [np.column_stack([col[k] for col in columns]) if columns else np.empty((len(frame), 0))
            for k, frame in enumerate((train, test))]
    return names, pair[0], pair[1]


def _neuroharmonize(gam: bool) -> ExternalAdapter:
    def adapter(python: str, train: Cohort, test: Cohort, smooth: list[str]) -> tuple[np.ndarray, np.ndarray]:
        covariates = _covariates(train)
        terms = [c for c in smooth if c in covariates.columns and pd.api.types.is_numeric_dtype(covariates[c])]
        if gam and not terms:
            raise NotApplicable("gam needs a continuous covariate")
        held_covariates = test.covariates[covariates.columns]
        if gam:  # as harmony's gam: a spline is not extrapolated, held-back values are clamped to the training range
            held_covariates = held_covariates.assign(**{c: held_covariates[c].clip(covariates[c].min(),
                                                                                   covariates[c].max()) for c in terms})
        names, fitted, held = _numeric(covariates, held_covariates)
        out, held_out, _ = run_neuroharmonize(python, (train.X, train.site, fitted), (test.X, test.site, held), names,
                                              terms if gam else [])
        return out, held_out
    return adapter


#: harmony's adapters by name: no harmonization, the registry's methods, ComBat with each transform.
ADAPTERS: dict[str, Adapter] = {
    "none": _none,
    "combat": _harmony("combat"),
    "combat+log": _harmony("combat", "log"),
    "combat+auto": _harmony("combat", "auto"),
    "gam": _harmony("gam"),
    "covbat": _harmony("covbat"),
    "nested": _harmony("nested"),
    "gmm": _harmony("gmm"),
}
#: The peers' adapters by name, with the module each needs.
PEERS: dict[str, tuple[str, Adapter]] = {
    "neuroCombat": ("neuroCombat", _neurocombat),
    "combatlearn-fortin": ("combatlearn", _combatlearn("fortin")),
    "combatlearn-chen": ("combatlearn", _combatlearn("chen")),
    "combatlearn-gam": ("combatlearn", _combatlearn("gam")),
}
#: The adapters of neuroHarmonize, which runs in a Python of its own (given as ``neuroharmonize_python``).
NEUROHARMONIZE: dict[str, ExternalAdapter] = {
    "neuroHarmonize": _neuroharmonize(gam=False),
    "neuroHarmonize-gam": _neuroharmonize(gam=True),
}


def available_methods(neuroharmonize_python: str | None = None) -> list[str]:
    """harmony's adapters and the peers whose package is installed, in a fixed order.

    Parameters
    ----------
    neuroharmonize_python : str, optional
        A Python that has neuroHarmonize: its adapters (:data:`NEUROHARMONIZE`) are listed too.

    Returns
    -------
    list of str
        Adapter names (keys of :data:`ADAPTERS`, :data:`PEERS` and, with ``neuroharmonize_python``,
        :data:`NEUROHARMONIZE`).

    Examples
    --------
    >>> available_methods()[:3]
    ['none', 'combat', 'combat+log']
    """
    return (list(ADAPTERS) + [name for name, (module, _) in PEERS.items() if importlib.util.find_spec(module)]
            + (list(NEUROHARMONIZE) if neuroharmonize_python else []))


def harmonize_split(method: str, train: Cohort, test: Cohort, smooth: list[str], *,
                    neuroharmonize_python: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``method`` on ``train`` and apply it to ``test``; warnings (reported by the scores) are silenced.

    Parameters
    ----------
    method : str
        An adapter name (:func:`available_methods`).
    train, test : Cohort
        The training and held-back subjects.
    smooth : list of str
        Continuous covariates a method may model nonlinearly.
    neuroharmonize_python : str, optional
        A Python that has neuroHarmonize (needed by the :data:`NEUROHARMONIZE` adapters).

    Returns
    -------
    (ndarray, ndarray)
        The harmonized training and held-back features.

    Raises
    ------
    NotApplicable
        When the method does not apply to the cohort, harmony refuses it, or a peer fails on it (the reason is
        its message); any other error of harmony's own methods is raised as it is.
    ValueError
        An unknown method.
    """
    adapter = ADAPTERS.get(method) or PEERS.get(method, (None, None))[1]
    if method in NEUROHARMONIZE and neuroharmonize_python:
        adapter = partial(NEUROHARMONIZE[method], neuroharmonize_python)
    if adapter is None:
        raise ValueError(f"method must be one of {available_methods(neuroharmonize_python)}, got {method!r}")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            out, held = adapter(train, test, smooth)
        except NotApplicable:
            raise
        except HarmonyError as exc:  # harmony's refusal (e.g. too few subjects) is a result; its bug is not
            raise NotApplicable(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            if method in ADAPTERS:
                raise
            raise NotApplicable(f"{type(exc).__name__}: {exc}") from exc  # a peer failing on a cohort is a result
    if out.shape != train.X.shape or held.shape != test.X.shape:
        raise NotApplicable(f"returned shapes {out.shape}, {held.shape}")
    return out, held
