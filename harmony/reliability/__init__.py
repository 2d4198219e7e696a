"""Reliability: ICC, Lin's CCC and CoV per feature and perturbation kind, categories and stable features.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".agreement": ["icc", "ccc"],
    ".table": ["reliability_table", "pairwise_ccc"],
    ".verdicts": ["feature_verdicts", "summary_counts"],
    ".settings": ["resolve_settings", "SETTINGS"],
})
