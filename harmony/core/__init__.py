"""The shared bottom of harmony: the config language, table schemas, file I/O, manifests, errors, progress.

Public names are imported lazily, on first use. The table contracts and column names are in
:mod:`harmony.core.schema` (``from harmony.core import schema``; ``schema.FEATURES``, ``schema.CASE_ID``).
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".errors": ["HarmonyError", "ConfigError", "SchemaError", "CaseError"],
    ".config": ["Field", "Section", "validate", "load", "read_toml", "apply_overrides", "parse_override"],
    ".schema": ["TableSpec", "Column", "wide_features"],
    ".files": ["read_table", "write_table", "read_json", "write_json", "stable_hash", "file_digest"],
    ".manifest": ["versions", "build_manifest", "write_manifest"],
    ".cases": ["load_cases", "write_cases", "load_case_images", "read_cases"],
    ".images": ["read_image", "as_image", "write_case"],
    ".lock": ["RunLock", "LockError"],
    ".progress": ["progress_bar"],
})
