"""The harmonization methods by name: ``combat``, ``gam``, ``covbat``, ``nested``, ``gmm``.

One registry behind ``harmony harmonize --method`` and ``[harmonization] method``: each name maps to its
estimator, the options it takes (validated by the ``[harmonization.<method>]`` section of
:data:`harmony.harmonize.settings.SETTINGS`), whether its batch is several columns, and the ``format`` of its
saved model, so that :func:`load_model` reads any of them back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harmony.core.config import validate
from harmony.core.files import read_json
from harmony.harmonize.combat import MODEL_FORMAT, ComBat
from harmony.harmonize.covbat import CovBat
from harmony.harmonize.gam import GAM_MODEL_FORMAT, ComBatGAM
from harmony.harmonize.gmm import HIDDEN, GMMComBat
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.nested import NestedComBat
from harmony.harmonize.settings import METHOD_SETTINGS, METHODS

__all__ = ["REGISTRY", "Method", "load_model", "make_harmonizer", "method_of", "model_batch_columns", "model_covariates"]


@dataclass(frozen=True)
class Method:
    """One harmonization method of the registry.

    Parameters
    ----------
    name : str
        Its name (``--method``, ``[harmonization] method``).
    estimator : type
        The estimator class (scikit-learn contract, ``batch``/``covariates`` metadata, JSON model).
    format : str
        The ``format`` of its saved model.
    options : callable
        Maps the validated ``[harmonization.<name>]`` table and the batch columns to estimator arguments.
    several_batches : bool, default False
        Its batch is a table of batch variables (Nested and GMM ComBat), not one label per sample.
    """

    name: str
    estimator: type
    format: str
    options: Callable[[dict[str, Any], list[str]], dict[str, Any]]
    several_batches: bool = False


def _gam(options: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    if not options["smooth"]:
        raise HarmonizationError("method 'gam' needs smooth covariates (--smooth age, or [harmonization.gam] "
                                 "smooth = [\"age\"])")
    spec = {"df": options["df"], "degree": options["degree"], "alpha": options["alpha"] or None}
    return {"smooth": {name: dict(spec) for name in options["smooth"]}}


def _covbat(options: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {"pct_var": options["pc_variance"], "n_pc": options["n_pc"] or None, "score_eb": options["score_eb"]}


def _nested(options: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {"order": columns if options["order"] == "given" else None, "beam_width": options["beam_width"]}


def _gmm(options: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    from_columns = [*columns, HIDDEN] if options["order"] == "given" else None
    return {"order": from_columns, "min_fraction": options["min_fraction"]}


#: The methods by name, in :data:`~harmony.harmonize.settings.METHODS` order.
REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("combat", ComBat, MODEL_FORMAT, lambda options, columns: {}),
    Method("gam", ComBatGAM, GAM_MODEL_FORMAT, _gam),
    Method("covbat", CovBat, CovBat._format, _covbat),
    Method("nested", NestedComBat, NestedComBat._format, _nested, several_batches=True),
    Method("gmm", GMMComBat, GMMComBat._format, _gmm, several_batches=True),
)}
if tuple(REGISTRY) != METHODS:  # the config's choices and the registry are one list
    raise RuntimeError(f"harmonization methods {tuple(REGISTRY)} differ from the settings' {METHODS}")


def make_harmonizer(method: str, common: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                    batch_columns: list[str] | None = None) -> Any:
    """An unfitted estimator of ``method`` with ComBat's options and the method's own.

    Parameters
    ----------
    method : str
        One of :data:`~harmony.harmonize.settings.METHODS`.
    common : mapping, optional
        ComBat's options (:func:`~harmony.harmonize.settings.combat_options`); one the method does not take
        is an error unless it has its default value.
    options : mapping, optional
        The ``[harmonization.<method>]`` table, validated here (defaults filled in).
    batch_columns : list of str, optional
        Nested and GMM ComBat: the batch variables, in the given order.

    Returns
    -------
    estimator
        The unfitted estimator.

    Raises
    ------
    HarmonizationError
        An unknown method, or an option the method does not take.
    ConfigError
        An option of the method out of range, naming it.

    Examples
    --------
    >>> make_harmonizer("covbat", {"parametric": False}, {"pc_variance": 0.9})
    CovBat(parametric=False, pct_var=0.9)
    >>> make_harmonizer("gmm", {"feature_transform": "log"})
    Traceback (most recent call last):
    ...
    harmony.harmonize.inputs.HarmonizationError: method 'gmm' does not take feature_transform (got 'log')
    """
    if method not in REGISTRY:
        raise HarmonizationError(f"method must be one of {list(REGISTRY)}, got {method!r}")
    entry = REGISTRY[method]
    kwargs = dict(entry.options(validate(dict(options or {}), METHOD_SETTINGS[method], file=f"method {method!r}"),
                                list(batch_columns or [])) if method in METHOD_SETTINGS else {})
    defaults = ComBat().get_params()
    accepted = entry.estimator().get_params()
    for key, value in (common or {}).items():
        if key in accepted:
            kwargs[key] = value
        elif value != defaults.get(key):
            raise HarmonizationError(f"method {method!r} does not take {key} (got {value!r})")
    return entry.estimator(**kwargs)


def method_of(model: Any) -> str:
    """The registry name of an estimator (fitted or not).

    Parameters
    ----------
    model : estimator
        An instance of one of the registry's classes.

    Returns
    -------
    str
        Its method name.

    Raises
    ------
    HarmonizationError
        When it is none of them.

    Examples
    --------
    >>> method_of(ComBatGAM())
    'gam'
    """
    for name, entry in REGISTRY.items():
        if type(model) is entry.estimator:
            return name
    raise HarmonizationError(f"{type(model).__name__} is not a harmony harmonization method ({list(REGISTRY)})")


def load_model(path: str | os.PathLike) -> Any:
    """Read a saved model of any method, by its ``format`` (and ``method``, when recorded).

    Parameters
    ----------
    path : str or path-like
        A model JSON file (``model.json`` of ``harmony harmonize``, or an estimator's ``save``).

    Returns
    -------
    estimator
        The fitted model.

    Raises
    ------
    HarmonizationError
        When the file is not a harmony model, or its recorded method does not match its format.
    HarmonyError
        When the file cannot be read or is not JSON.
    """
    data = read_json(path)
    fmt = data.get("format") if isinstance(data, dict) else None
    entry = next((e for e in REGISTRY.values() if e.format == fmt), None)
    if entry is None:
        raise HarmonizationError(f"{path}: not a harmony harmonization model (format {fmt!r}; known: "
                                 f"{[e.format for e in REGISTRY.values()]})")
    recorded = data.get("method", entry.name)
    if recorded != entry.name:
        raise HarmonizationError(f"{path}: the model records method {recorded!r} but its format {fmt!r} is "
                                 f"method {entry.name!r}")
    return entry.estimator.from_dict(data, source=str(path))


def model_covariates(model: Any) -> list[str]:
    """The covariate columns a fitted model of any method was fitted with (and needs at transform).

    Parameters
    ----------
    model : estimator
        A fitted model of the registry.

    Returns
    -------
    list of str
        The covariate column names.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> model = CovBat().fit(rng.normal(size=(40, 4)), batch=np.repeat(["a", "b"], 20),
    ...                      covariates=pd.DataFrame({"age": rng.uniform(20, 80, 40)}))
    >>> model_covariates(model)
    ['age']
    """
    inner = {"covbat": lambda m: m.combat_, "nested": lambda m: m.steps_[0],
             "gmm": lambda m: m.nested_.steps_[0]}.get(method_of(model), lambda m: m)(model)
    names = [c.name for c in inner.covariates_]
    smooth = [t["name"] for t in getattr(inner, "smooth_terms_", [])]
    return names + [s for s in smooth if s not in names]


def model_batch_columns(model: Any) -> list[str] | None:
    """The batch variables of a fitted Nested or GMM ComBat model (the hidden batch left out); None for others.

    Parameters
    ----------
    model : estimator
        A fitted model of the registry.

    Returns
    -------
    list of str or None
        The batch columns it harmonizes, in the order applied.
    """
    method = method_of(model)
    if method == "nested":
        return list(model.order_)
    if method == "gmm":
        return [c for c in model.nested_.order_ if c != HIDDEN]
    return None
