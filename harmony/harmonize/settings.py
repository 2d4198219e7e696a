"""The ``[harmonization]`` settings of an experiment: the method, its options, and the estimator arguments they give."""

from __future__ import annotations

from typing import Any

from harmony.core import schema
from harmony.core.config import Field, Section

__all__ = ["METHODS", "METHOD_SETTINGS", "ORDERS", "SETTINGS", "TRANSFORMS", "combat_options", "method_options"]

#: The per-feature transforms ComBat can apply before harmonizing and invert after (``feature_transform``).
TRANSFORMS = ("log", "yeo-johnson", "quantile-normal", "auto")
#: The harmonization methods (:mod:`harmony.harmonize.methods` maps each to its estimator).
METHODS = ("combat", "gam", "covbat", "nested", "gmm")
#: How Nested and GMM ComBat order the batch variables: as given, or optimised (OPNested's criterion).
ORDERS = ("given", "optimise")


def _columns(doc: str) -> Field:
    return Field(list, [], item=Field(str), doc=doc)


#: Options of each method beyond ComBat's, one sub-table each (``[harmonization.gam]`` ...).
METHOD_SETTINGS = {
    "gam": Section({
        "smooth": _columns("Covariates (numeric columns of `covariates`) whose effects are smooth (penalised splines)."),
        "df": Field(int, 10, min=3, doc="B-spline functions per smooth covariate."),
        "degree": Field(int, 3, min=1, doc="B-spline degree."),
        "alpha": Field(float, 0.0, min=0.0,
                       doc="Penalty of the smooth terms; 0: chosen per feature by cross-validation."),
    }, doc="ComBat-GAM (method = \"gam\")."),
    "covbat": Section({
        "pc_variance": Field(float, 0.95, min=0.0, max=1.0, min_exclusive=True,
                             doc="Harmonize the fewest principal component scores explaining more than this."),
        "n_pc": Field(int, 0, min=0, doc="The number of scores to harmonize; 0: by pc_variance."),
        "score_eb": Field(bool, False, doc="Empirical Bayes in the ComBat of the scores (the authors': no)."),
    }, doc="CovBat (method = \"covbat\")."),
    "nested": Section({
        "batch_columns": _columns("Cases columns of the batch variables (e.g. manufacturer, kernel); empty: `batch`."),
        "order": Field(str, "optimise", choices=ORDERS, doc="Harmonize them in the given order, or optimise it."),
        "beam_width": Field(int, 3, min=1, doc="Partial orders kept by the search over more than 4 variables."),
    }, doc="Nested ComBat (method = \"nested\")."),
    "gmm": Section({
        "batch_columns": _columns("Known batch variables harmonized with the hidden one; empty: `batch`."),
        "order": Field(str, "optimise", choices=ORDERS, doc="Order of the known variables, then the hidden one."),
        "min_fraction": Field(float, 0.25, min=0.0, max=0.5, min_exclusive=True,
                              doc="Smallest share of subjects each mixture component must hold."),
    }, doc="GMM ComBat (method = \"gmm\"): a hidden batch found by a two-component Gaussian mixture."),
}

#: The ``[harmonization]`` section of an experiment config.
SETTINGS = Section(
    {
        "enabled": Field(bool, True, doc="Harmonize the original features."),
        "method": Field(str, "combat", choices=METHODS, doc="The harmonization method."),
        "batch": Field(str, schema.SITE, doc="Cases column holding the batch (scanner, site)."),
        "covariates": Field(list, [], item=Field(str), doc="Cases columns whose effects are preserved."),
        "parametric": Field(bool, True, doc="Parametric (true) or non-parametric empirical Bayes priors."),
        "eb": Field(bool, True, doc="Shrink the batch estimates with empirical Bayes."),
        "mean_only": Field(bool, False, doc="Adjust the location only, not the scale."),
        "ref_batch": Field(str, "", doc="Batch left unchanged, the others are mapped onto it; empty: none."),
        "transform": Field(str, "none", choices=("none",) + TRANSFORMS,
                           doc="Per-feature transform applied before ComBat and inverted after."),
        "min_batch_size": Field(int, 10, min=2, doc="Fitting a smaller batch warns."),
        **METHOD_SETTINGS,
    },
    doc="Harmonization (the ComBat family); see harmony.harmonize.",
)


def combat_options(settings: dict) -> dict[str, Any]:
    """:class:`ComBat` keyword arguments from a validated ``[harmonization]`` section.

    The ``transform`` key is ComBat's ``feature_transform``.

    Parameters
    ----------
    settings : dict
        The ``[harmonization]`` section, validated against :data:`SETTINGS`.

    Returns
    -------
    dict of str to Any
        ``parametric``, ``eb``, ``mean_only``, ``ref_batch`` (None when empty), ``feature_transform``
        (None for ``"none"``) and ``min_batch_size``.

    Examples
    --------
    >>> from harmony.core.config import validate
    >>> combat_options(validate({"transform": "log"}, SETTINGS))
    {'parametric': True, 'eb': True, 'mean_only': False, 'ref_batch': None, 'feature_transform': 'log', 'min_batch_size': 10}
    """
    return {"parametric": settings["parametric"], "eb": settings["eb"], "mean_only": settings["mean_only"],
            "ref_batch": settings["ref_batch"] or None,
            "feature_transform": None if settings["transform"] == "none" else settings["transform"],
            "min_batch_size": settings["min_batch_size"]}


def method_options(settings: dict) -> dict[str, Any]:
    """The method's options from a validated ``[harmonization]`` section, as its sub-table holds them.

    Parameters
    ----------
    settings : dict
        The ``[harmonization]`` section, validated against :data:`SETTINGS`.

    Returns
    -------
    dict of str to Any
        The ``[harmonization.<method>]`` table (empty for ``combat``).

    Examples
    --------
    >>> from harmony.core.config import validate
    >>> method_options(validate({"method": "covbat", "covbat": {"pc_variance": 0.9}}, SETTINGS))
    {'pc_variance': 0.9, 'n_pc': 0, 'score_eb': False}
    """
    return dict(settings.get(settings["method"]) or {})
