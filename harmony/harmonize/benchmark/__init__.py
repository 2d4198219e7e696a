"""A ground-truth benchmark of harmonizers: simulated cohorts whose biology and scanner effects are known, thin
adapters that give every harmonizer one interface, and scores of the site effect left and the biology kept.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".cohorts": ["CohortModel", "Cohort", "Scenario", "ImageScenario", "DEFAULT_MATRIX", "LARGE_MATRIX", "scenario_model",
                 "simulate_cohort"],
    ".adapters": ["ADAPTERS", "NotApplicable", "available_methods", "harmonize_split"],
    ".scores": ["balanced_site_accuracy", "site_test_fractions", "truth_correlation", "effect_bias",
                "group_effect_kept", "out_of_range_fraction", "covariance_left", "score_split"],
    ".cells": ["Cell", "run_cell", "rank_methods", "recommend", "sample_size_curve"],
    ".images": ["ImageCohort", "image_cohort"],
    ".likeme": ["fit_cohort_model"],
})
