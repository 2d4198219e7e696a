"""Workflows: the stages composed into ``harmony run`` and the single-stage commands.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".experiment": ["experiment_schema", "load_experiment"],
    ".run": ["run_experiment", "run_config", "RunSummary", "write_report"],
    ".layout": ["load_run", "FILES"],
    ".assess": ["run_reliability"],
    ".harmonization": ["run_harmonization"],
})
