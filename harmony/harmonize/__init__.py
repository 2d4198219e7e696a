"""Harmonization: ComBat and its transforms, fitted on one set of subjects and applied to new ones, and the metrics of the site effect.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".combat": ["ComBat"],
    ".inputs": ["HarmonizationError"],
    ".covariates": ["Covariate", "fit_covariates", "covariate_matrix"],
    ".transforms": ["TRANSFORMS", "make_transform"],
    ".features": ["harmonize_features", "harmonization_inputs", "read_cases"],
    ".metrics": ["site_effects", "site_classifier_accuracy", "truth_correlations", "covariate_effects", "harmonization_metrics", "welch_anova"],
    ".simulation": ["simulate_site_features"],
    ".settings": ["SETTINGS", "combat_options"],
})
