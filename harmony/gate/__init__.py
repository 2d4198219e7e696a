"""The gate: extractor-change baselines and checks, and IBSI compliance.

Public names are imported lazily, on first use.
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".baseline": ["create_baseline", "load_baseline", "check_baseline", "GateError"],
    ".compare": ["compare_features", "GateResult"],
    ".reports": ["format_table", "markdown_report", "junit_xml", "write_check_report"],
    ".ibsi": ["ibsi_compliance", "compliance_table", "write_compliance"],
    ".settings": ["SETTINGS"],
})
