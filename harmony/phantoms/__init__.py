"""Phantoms: the IBSI digital phantom, procedural lesion phantoms, scanner profiles and simulated cohorts.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".digital": ["ibsi_digital_phantom", "write_ibsi_phantom"],
    ".specs": ["phantom_spec", "load_scanner", "builtin_scanners", "load_cohort_spec", "SUBJECT"],
    ".render": ["render_phantom"],
    ".scanners": ["acquire"],
    ".cohort": ["simulate_cohort", "sample_subjects"],
})
