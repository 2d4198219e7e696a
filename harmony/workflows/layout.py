"""The run directory's layout, and reading a run's tables back.

Run directory::

    manifest.json              resolved config, hashes, seeds, versions, times, task counts, stages
    cohort/                    simulated images and cases.csv (phantom cohorts only)
    cases.parquet  variants.parquet
    extraction/                the engine's tasks, features.parquet, failures.parquet
    reliability/               reliability.parquet, ccc_pairwise.parquet, stable_features.csv
    harmonization/             harmonized.parquet, model.json and the harmonization metrics
    report.html  figures/*.png
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.files import read_json, read_table
from harmony.core.manifest import MANIFEST_NAME, NOT_RUN
from harmony.extraction.taskfiles import FAILURES_NAME, FEATURES_NAME
from harmony.harmonize import metrics as hm
from harmony.workflows.assess import OUTPUTS as RELIABILITY_OUTPUTS
from harmony.workflows.harmonization import OUTPUTS as HARMONIZATION_OUTPUTS

__all__ = ["COHORT_DIR", "EXTRACTION_DIR", "RELIABILITY_DIR", "HARMONIZATION_DIR", "FIGURES_DIR", "FILES", "STAGES",
           "load_run"]

#: The run directory's folders of each stage.
COHORT_DIR, EXTRACTION_DIR, RELIABILITY_DIR, HARMONIZATION_DIR = "cohort", "extraction", "reliability", "harmonization"
#: The report's figures (PNG), beside ``report.html``.
FIGURES_DIR = "figures"
#: Paths of a run directory's tables, relative to it.
FILES = {
    "cases": "cases.parquet",
    "variants": "variants.parquet",
    "features": f"{EXTRACTION_DIR}/{FEATURES_NAME}",
    "failures": f"{EXTRACTION_DIR}/{FAILURES_NAME}",
    "reliability": f"{RELIABILITY_DIR}/{RELIABILITY_OUTPUTS['reliability']}",
    "harmonized": f"{HARMONIZATION_DIR}/{HARMONIZATION_OUTPUTS['harmonized']}",
    "site_effects": f"{HARMONIZATION_DIR}/{HARMONIZATION_OUTPUTS['site_effects']}",
    "harmonization_summary": f"{HARMONIZATION_DIR}/{HARMONIZATION_OUTPUTS['summary']}",
    "truth_correlation": f"{HARMONIZATION_DIR}/{HARMONIZATION_OUTPUTS['truth_correlation']}",
    "report": "report.html",
}


#: The stages of ``harmony run``, in order (the keys of the manifest's ``stages``).
STAGES = ("cases", "variants", "extraction", "reliability", "harmonization", "report")


# -- the run's tables -----------------------------------------------------------------------------------

def _read_optional(run_dir: Path, key: str, spec: schema.TableSpec) -> pd.DataFrame | None:
    path = run_dir / FILES[key]
    return read_table(path, spec) if path.is_file() else None


#: Table key -> (its spec, the pipeline stage that writes it).
_TABLES: dict[str, tuple[schema.TableSpec, str]] = {
    "cases": (schema.CASES, "cases"),
    "variants": (schema.VARIANTS, "variants"),
    "features": (schema.FEATURES, "extraction"),
    "failures": (schema.FAILURES, "extraction"),
    "reliability": (schema.RELIABILITY, "reliability"),
    "harmonized": (schema.HARMONIZED, "harmonization"),
    "site_effects": (hm.SITE_EFFECTS, "harmonization"),
    "truth_correlation": (hm.TRUTH_CORRELATION, "harmonization"),
    "harmonization_summary": (hm.SUMMARY, "harmonization"),
}


def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The tables and manifest of a run directory (absent optional tables are ``None``).

    A table whose stage the manifest records as not run is ``None`` too: a file left by an earlier run into
    the same directory (say, harmonization since disabled) must not be reported as this run's result.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A directory written by ``harmony run`` (:func:`harmony.run_experiment`).

    Returns
    -------
    dict
        ``manifest`` (a dict, empty when absent) and the tables ``cases``, ``variants``, ``features``,
        ``failures``, ``reliability``, ``harmonized``, ``site_effects``, ``truth_correlation`` and
        ``harmonization_summary``, each validated against its contract, or ``None``.

    Raises
    ------
    SchemaError
        A table that is present does not follow its contract.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as run_dir:
    ...     tables = load_run(run_dir)
    >>> tables["manifest"], tables["features"] is None
    ({}, True)
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / MANIFEST_NAME
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    stages = manifest.get("stages") or {}
    return {"manifest": manifest} | {
        key: None if NOT_RUN in (stages.get(stage) or {}) else _read_optional(run_dir, key, spec)
        for key, (spec, stage) in _TABLES.items()
    }
