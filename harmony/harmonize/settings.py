"""The ``[harmonization]`` settings of an experiment and the ComBat options they give."""

from __future__ import annotations

from typing import Any

from harmony.core import schema
from harmony.core.config import Field, Section

__all__ = ["TRANSFORMS", "SETTINGS", "combat_options"]

#: The per-feature transforms ComBat can apply before harmonizing and invert after (``feature_transform``).
TRANSFORMS = ("log", "yeo-johnson", "quantile-normal")

#: The ``[harmonization]`` section of an experiment config.
SETTINGS = Section(
    {
        "enabled": Field(bool, True, doc="Harmonize the original features with ComBat."),
        "batch": Field(str, schema.SITE, doc="Cases column holding the batch (scanner, site)."),
        "covariates": Field(list, [], item=Field(str), doc="Cases columns whose effects ComBat preserves."),
        "parametric": Field(bool, True, doc="Parametric (true) or non-parametric empirical Bayes priors."),
        "eb": Field(bool, True, doc="Shrink the batch estimates with empirical Bayes."),
        "mean_only": Field(bool, False, doc="Adjust the location only, not the scale."),
        "ref_batch": Field(str, "", doc="Batch left unchanged, the others are mapped onto it; empty: none."),
        "transform": Field(str, "none", choices=("none",) + TRANSFORMS,
                           doc="Per-feature transform applied before ComBat and inverted after."),
    },
    doc="ComBat harmonization; see harmony.harmonize.",
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
        ``parametric``, ``eb``, ``mean_only``, ``ref_batch`` (None when empty) and ``feature_transform``
        (None for ``"none"``).

    Examples
    --------
    >>> from harmony.core.config import validate
    >>> combat_options(validate({"transform": "log"}, SETTINGS))
    {'parametric': True, 'eb': True, 'mean_only': False, 'ref_batch': None, 'feature_transform': 'log'}
    """
    return {"parametric": settings["parametric"], "eb": settings["eb"], "mean_only": settings["mean_only"],
            "ref_batch": settings["ref_batch"] or None,
            "feature_transform": None if settings["transform"] == "none" else settings["transform"]}
