"""Harmonization: the ComBat family (ComBat, ComBat-GAM, CovBat, Nested and GMM ComBat) and its transforms,
fitted on one set of subjects and applied to new ones.

Also the metrics of the site effect before and after harmonization, and a simulated multi-site cohort with
known truth to measure them on.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".combat": ["ComBat"],
    ".gam": ["ComBatGAM"],
    ".covbat": ["CovBat"],
    ".nested": ["NestedComBat"],
    ".gmm": ["GMMComBat"],
    ".inputs": ["HarmonizationError", "HarmonizationWarning"],
    ".methods": ["make_harmonizer", "load_model"],
    ".covariates": ["Covariate", "fit_covariates", "covariate_matrix"],
    ".transforms": ["TransformError", "make_transform"],
    ".features": ["harmonize_features", "harmonization_inputs"],
    ".metrics": ["MetricsError", "site_effects", "site_classifier_accuracy", "truth_correlations",
                 "covariate_effects", "harmonization_metrics", "welch_anova"],
    ".simulation": ["simulate_site_features"],
    ".settings": ["SETTINGS", "TRANSFORMS", "METHODS", "combat_options"],
})
