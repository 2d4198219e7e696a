"""The ``[reliability]`` settings: the ICC form, category thresholds, the stable rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony.core import schema
from harmony.core.config import Field, Section, validate
from harmony.core.schema import ICC_METRICS

__all__ = ["ALL", "CCC", "COV", "RANGE", "UNDEFINED", "DEFAULT_SEED", "ICC_CATEGORIES", "CCC_CATEGORIES",
           "COV_CATEGORIES", "RANGE_CATEGORY", "SETTINGS", "resolve_settings"]

#: The perturbation group holding every variant.
ALL = "all"
#: The metric labels of the overall CCC, the coefficient of variation and the range.
CCC, COV, RANGE = schema.RELIABILITY_METRICS[len(ICC_METRICS):]
#: The category of a row whose metric could not be computed (its ``reason`` says why).
UNDEFINED = "undefined"
_ICC_AK = ICC_METRICS[4]  # the one form that can lack a value (see _icc_arrays)
#: Seed of the CCC bootstrap when no generator is given.
DEFAULT_SEED = 0
#: ICC categories, lowest first (Koo & Li 2016).
ICC_CATEGORIES = ("poor", "moderate", "good", "excellent")  # Koo & Li 2016
#: CCC categories, lowest first (McBride 2005).
CCC_CATEGORIES = ("poor", "moderate", "substantial", "almost perfect")  # McBride 2005
#: CoV categories: at most ``cov_max``, or above.
COV_CATEGORIES = ("low", "high")
#: The category of every range row: descriptive, in feature units, never flagged.
RANGE_CATEGORY = "descriptive"
_VERDICT_METRICS = ("icc", "ccc", "cov")


def _three_increasing(values: list) -> str | None:
    ok = len(values) == 3 and all(0 <= v <= 1 for v in values) and values[0] < values[1] < values[2]
    return None if ok else "expected three increasing values in [0, 1]"


#: The ``[reliability]`` section of an experiment config (``harmony reliability --config``).
SETTINGS = Section(
    {
        "icc": Field(str, "ICC(A,1)", choices=ICC_METRICS, doc="ICC form used for the verdict."),
        "judge_on": Field(str, "ci_low", choices=("ci_low", "estimate"),
                          doc="Judge categories on the conservative CI bound (lower for ICC/CCC, upper for "
                              "CoV) or on the point estimate."),
        "confidence": Field(float, 0.95, min=0.5, max=0.999, doc="Confidence level of every interval."),
        "icc_thresholds": Field(list, [0.5, 0.75, 0.9], item=Field(float), check=_three_increasing,
                                doc="Koo & Li bounds between poor, moderate, good and excellent."),
        "icc_min": Field(float, 0.75, min=0.0, max=1.0, doc="An ICC row is stable when its judged value >= this."),
        "ccc_thresholds": Field(list, [0.90, 0.95, 0.99], item=Field(float), check=_three_increasing,
                                doc="McBride bounds between poor, moderate, substantial and almost perfect."),
        "ccc_min": Field(float, 0.90, min=0.0, max=1.0, doc="A CCC row is stable when its judged value >= this."),
        "cov_max": Field(float, 0.10, min=0.0, min_exclusive=True,
                         doc="A CoV row is stable (low) when its judged value <= this."),
        "verdict": Field(list, ["icc"], item=Field(str, choices=_VERDICT_METRICS), min_items=1,
                         doc="Metrics every perturbation must pass for a feature to be stable."),
        "bootstrap": Field(int, 1000, min=100, doc="Case-bootstrap resamples for the overall CCC interval."),
        "min_cases": Field(int, 3, min=1,
                           doc="Fewest cases a reliability analysis accepts (fewer: an error). Below 3 no "
                               "interval is meaningful: lowering it runs with a loud warning."),
        "recommended_cases": Field(int, 30, min=2,
                                   doc="Koo & Li (2016): >= 30 heterogeneous cases; fewer runs with a warning "
                                       "stating the interval width it implies."),
        "recommended_conditions": Field(int, 3, min=2,
                                        doc="Koo & Li (2016): >= 3 raters; a perturbation group with fewer "
                                            "conditions (original included) gets a warning."),
    }
)


def resolve_settings(settings: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Validate ``settings`` (a ``[reliability]`` section) with keyword overrides; defaults filled in.

    Parameters
    ----------
    settings : mapping, optional
        A ``[reliability]`` section (:data:`SETTINGS`); absent keys take their defaults.
    **overrides
        Keys set over ``settings`` (``icc="ICC(C,1)"``, ``judge_on="estimate"``).

    Returns
    -------
    dict
        The validated settings.

    Raises
    ------
    ConfigError
        An unknown key or a bad value, named ``reliability.<key>``.

    Examples
    --------
    >>> resolve_settings()["icc"], resolve_settings()["icc_min"]
    ('ICC(A,1)', 0.75)
    >>> resolve_settings(icc="ICC(C,1)")["icc"]
    'ICC(C,1)'
    >>> resolve_settings({"judge_on": "upper"})
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: <settings>: reliability.judge_on: must be one of ['ci_low', 'estimate'], got 'upper'
    """
    merged = {**(settings or {}), **overrides}
    return validate(merged, SETTINGS, file="<settings>", prefix="reliability")
