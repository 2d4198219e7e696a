"""Perturbations: specs sampled once and applied deterministically, chained into variants by designs.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".specs": ["Spec", "Noise", "Intensity", "Resample", "Rotate", "Translate", "ErodeDilate", "Volume", "Contour", "BinWidth", "BinCount", "SPEC_TYPES", "spec_from_dict", "apply"],
    ".ops": ["PerturbationError", "estimate_noise"],
    ".variants": ["Variant", "case_rng", "iter_variants", "variants_table", "variants_from_table"],
    ".design": ["DESIGN", "expand_design"],
    ".batch": ["perturb_cases"],
})
