"""The report: figures (``ax=None`` in, the Figure out) and the self-contained HTML page of a run.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".figures": ["plot_icc_distribution", "plot_icc_heatmap", "plot_site_effect", "plot_pca", "plot_truth_correlation"],
    ".page": ["render_report", "stable_features"],
})
