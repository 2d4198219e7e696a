"""harmony: benchmark the reproducibility of radiomic features and harmonize them across scanners.

The public API, imported lazily so that ``import harmony`` (and the CLI) starts fast::

    import harmony
    image, mask = harmony.apply(harmony.Noise(level=5.0), "ct.nrrd", "gtv.nrrd", rng=np.random.default_rng(0))
    features = harmony.extract(image, mask, {"setting": {"binWidth": 25}}).features
    harmony.icc(long_table, targets="case_id", raters="variant_id", ratings="value", features="feature")
    harmony.ComBat().fit_transform(wide_features, batch=sites)

See the README's "Python API" section for a worked example.
"""

from harmony.core.lazy import lazy_exports
from harmony.core.version import __version__

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".core.errors": ["HarmonyError", "ConfigError", "SchemaError", "CaseError"],
    ".core.cases": ["load_cases"],
    ".core.files": ["read_table", "write_table"],
    ".phantoms.digital": ["ibsi_digital_phantom"],
    ".phantoms.render": ["render_phantom", "phantom_spec"],
    ".phantoms.scanners": ["load_scanner", "builtin_scanners", "acquire"],
    ".phantoms.cohort": ["simulate_cohort", "load_cohort_spec"],
    ".perturb.specs": ["apply", "Noise", "Intensity", "Resample", "Rotate", "Translate", "ErodeDilate", "Volume",
                       "Contour", "BinWidth", "BinCount"],
    ".perturb.variants": ["Variant"],
    ".perturb.design": ["expand_design"],
    ".extraction.adapter": ["extract", "make_extractor"],
    ".extraction.params": ["load_params"],
    ".extraction.engine": ["run_tasks"],
    ".reliability.agreement": ["icc", "ccc"],
    ".reliability.table": ["reliability_table"],
    ".reliability.verdicts": ["feature_verdicts"],
    ".harmonize.combat": ["ComBat"],
    ".harmonize.metrics": ["site_effects", "site_classifier_accuracy"],
    ".harmonize.simulation": ["simulate_site_features"],
    ".workflows.experiment": ["load_experiment"],
    ".workflows.run": ["run_experiment", "run_config"],
})
__all__ = ["__version__", *__all__]
