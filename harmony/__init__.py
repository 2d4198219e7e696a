"""harmony: benchmark the reproducibility of radiomic features and harmonize them across scanners.

The public API (``__all__``), imported lazily so that ``import harmony`` (and the CLI) starts fast: a name's
module, and numpy, pandas, SimpleITK or pyradiomics with it, is imported on first use (``np`` is numpy)::

    image, mask = harmony.apply(harmony.Noise(level=5.0), "ct.nrrd", "gtv.nrrd", rng=np.random.default_rng(0))
    features = harmony.extract(image, mask, {"setting": {"binWidth": 25}}).features  # name -> value
    rows = harmony.feature_rows(features, case_id="p001", site="a", variant_id="noise")  # long table rows
    harmony.icc(long_table, targets="case_id", raters="variant_id", ratings="value", features="feature")
    X = harmony.wide_features(long_table, index=["case_id"]).set_index("case_id")  # cases x features
    harmony.ComBat().fit_transform(X, batch=sites, covariates=covariates)

The stages' packages (:mod:`harmony.phantoms`, :mod:`harmony.perturb`, :mod:`harmony.extraction`,
:mod:`harmony.reliability`, :mod:`harmony.harmonize`, :mod:`harmony.gate`, :mod:`harmony.workflows`, and
:mod:`harmony.core` below them) export more. See the README's "Python API" section for a worked example.
"""

from harmony.core.lazy import lazy_exports
from harmony.core.version import __version__

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".core.errors": ["HarmonyError", "ConfigError", "SchemaError", "CaseError"],
    ".core.cases": ["load_cases"],
    ".core.schema": ["wide_features"],
    ".phantoms.digital": ["ibsi_digital_phantom"],
    ".phantoms.specs": ["phantom_spec", "load_scanner", "builtin_scanners", "load_cohort_spec"],
    ".phantoms.render": ["render_phantom"],
    ".phantoms.scanners": ["acquire"],
    ".phantoms.cohort": ["simulate_cohort"],
    ".perturb.specs": ["apply", "Noise", "Intensity", "Resample", "Rotate", "Translate", "ErodeDilate", "Volume",
                       "Contour", "BinWidth", "BinCount"],
    ".perturb.variants": ["Variant"],
    ".perturb.design": ["expand_design"],
    ".extraction.adapter": ["extract", "make_extractor", "feature_rows"],
    ".extraction.params": ["load_params"],
    ".extraction.engine": ["run_tasks"],
    ".reliability.agreement": ["icc", "ccc"],
    ".reliability.table": ["reliability_table"],
    ".reliability.verdicts": ["feature_verdicts"],
    ".harmonize.combat": ["ComBat"],
    ".harmonize.gam": ["ComBatGAM"],
    ".harmonize.covbat": ["CovBat"],
    ".harmonize.nested": ["NestedComBat"],
    ".harmonize.gmm": ["GMMComBat"],
    ".harmonize.features": ["harmonize_features"],
    ".harmonize.metrics": ["site_effects", "site_classifier_accuracy"],
    ".harmonize.simulation": ["simulate_site_features"],
    ".gate.ibsi": ["ibsi_compliance"],
    ".workflows.experiment": ["load_experiment"],
    ".workflows.run": ["run_experiment", "run_config"],
    ".workflows.layout": ["load_run"],
})
__all__ = ["__version__", *__all__]
