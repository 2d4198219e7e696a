"""Extraction: the pyradiomics adapter, shared filtered images, and the engine that runs the tasks.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".params": ["load_params", "merge_params", "resolve_label"],
    ".adapter": ["make_extractor", "extract", "Extraction", "feature_rows", "feature_class", "image_type"],
    ".shared": ["SharedExtraction"],
    ".tasks": ["plan", "Task"],
    ".engine": ["run_tasks", "RunResult"],
    ".settings": ["EXECUTORS", "SETTINGS"],
})
