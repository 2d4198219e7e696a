"""``harmony export RUN_DIR``: the run's features as wide tables a modeller reads in one line.

Written into the export folder (default ``RUN_DIR/export``):

    features_<variant_id>.<ext>  one per variant: a row per case (and repeat), a column per feature
    model_table.<ext>            the features stable under the run's rule, harmonized, a row per case, with
                                 case_id, patient_id (when the cases have one), site and the covariates
    model_table.json             how model_table was made: run, rule, features kept, harmonization, versions
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.files import atomic_write, file_digest, path_component, write_json
from harmony.core.manifest import MANIFEST_NAME, now_utc, versions
from harmony.core.notices import warn
from harmony.core.wide import long_to_wide
from harmony.workflows.assess import OUTPUTS as RELIABILITY_OUTPUTS
from harmony.workflows.layout import FILES, RELIABILITY_DIR, load_run

__all__ = ["EXPORT_DIR", "EXPORT_FORMATS", "MODEL_TABLE", "export_run"]

#: The export folder's default name, inside the run folder.
EXPORT_DIR = "export"
#: Table formats ``harmony export --format`` writes.
EXPORT_FORMATS = schema.TABLE_FORMATS
#: The final table's file stem (``model_table.parquet`` and its sidecar ``model_table.json``).
MODEL_TABLE = "model_table"

def _write(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    if fmt == "parquet":
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _case_columns(cases: pd.DataFrame | None) -> pd.DataFrame | None:
    """case_id, patient_id (when present), site and the covariates of each case; no paths, no truth_*."""
    if cases is None:
        return None
    keep = [schema.CASE_ID] + ([schema.PATIENT_ID] if schema.PATIENT_ID in cases.columns else []) + [schema.SITE]
    keep += [c for c in schema.covariate_columns(cases) if c not in keep]
    return cases[keep]


def _wide(rows: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    key = rows[index].astype(str).agg("\x1f".join, axis=1)
    wide = long_to_wide(rows.assign(_key=key), index="_key")
    first = rows.assign(_key=key).drop_duplicates("_key").set_index("_key")[index]
    return first.join(wide).reset_index(drop=True)


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
               fmt: str = "parquet") -> dict[str, Path]:
    """Write a run's features as wide tables: one per variant, and the final model table with its sidecar.

    The model table holds the features the reliability stage judged stable (all of them, with a warning,
    when the run had no reliability stage), with the harmonized values of the ``original`` variant (the raw
    values, with a warning, when the run had no harmonization stage), one row per case.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A folder written by ``harmony run``.
    out : str or os.PathLike, optional
        Where to write; default ``run_dir/export``.
    fmt : {"parquet", "csv"}, default "parquet"
        The tables' format.

    Returns
    -------
    dict of str to pathlib.Path
        ``model_table``, ``sidecar`` and ``features[<variant_id>]`` for each variant.

    Raises
    ------
    HarmonyError
        ``run_dir`` holds no finished extraction, ``fmt`` is unknown, or a variant id cannot be a file name.
    """
    if fmt not in EXPORT_FORMATS:
        raise HarmonyError(f"--format must be one of {list(EXPORT_FORMATS)}, got {fmt!r}")
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST_NAME).is_file():
        raise HarmonyError(f"{run_dir}: not a run folder (no {MANIFEST_NAME}; write one with `harmony run`)")
    tables = load_run(run_dir)
    features = tables["features"]
    if features is None:
        raise HarmonyError(f"{run_dir}: the run has no features table ({FILES['features']}); finish the run first")
    out = Path(out) if out is not None else run_dir / EXPORT_DIR
    cases = _case_columns(tables["cases"])
    index = [schema.CASE_ID, schema.SITE, schema.REPEAT]
    written: dict[str, Any] = {"features": {}}
    for variant, rows in features.groupby(schema.VARIANT_ID, observed=True, sort=True):
        name = path_component(variant, "variant_id", suffix=f"features_.{fmt}")
        wide = _wide(rows, index)
        if cases is not None and schema.PATIENT_ID in cases.columns:
            patients = cases.set_index(schema.CASE_ID)[schema.PATIENT_ID]
            wide.insert(1, schema.PATIENT_ID, wide[schema.CASE_ID].map(patients))
        written["features"][name] = _write(wide, out / f"features_{name}.{fmt}", fmt)

    verdicts_path = run_dir / RELIABILITY_DIR / RELIABILITY_OUTPUTS["verdicts"]
    rule: dict[str, Any]
    all_features = list(pd.unique(features[schema.FEATURE].astype(str)))
    if tables["reliability"] is not None and verdicts_path.is_file():
        verdicts = pd.read_csv(verdicts_path)
        stable = [f for f in verdicts.loc[verdicts[schema.STABLE].astype(bool), schema.FEATURE]]
        config = tables["manifest"].get("config", {}).get("reliability", {})
        rule = {"source": str(verdicts_path.relative_to(run_dir)), "settings": config,
                "stable": len(stable), "of": len(verdicts)}
    else:
        warn(f"{run_dir}: the run has no reliability verdicts; the model table holds every feature, "
             "none judged stable")
        stable, rule = all_features, {"source": None, "stable": None, "of": len(all_features)}
    if not stable:
        warn(f"{run_dir}: no feature is stable under the run's rule; the model table has no feature "
             "column")

    harmonized = tables["harmonized"]
    if harmonized is not None:
        values = harmonized[(harmonized[schema.STAGE] == schema.STAGES[-1])
                            & (harmonized[schema.VARIANT_ID] == schema.ORIGINAL)]
        harmonization = {"source": FILES["harmonized"],
                         "settings": tables["manifest"].get("config", {}).get("harmonization", {})}
    else:
        warn(f"{run_dir}: the run has no harmonization stage; the model table holds raw values")
        values = features[features[schema.VARIANT_ID] == schema.ORIGINAL]
        harmonization = {"source": None}
    first = values.groupby(schema.CASE_ID, observed=True)[schema.REPEAT].transform("min")
    values = values[(values[schema.REPEAT] == first) & values[schema.FEATURE].astype(str).isin(stable)]
    wide = long_to_wide(values.astype({schema.FEATURE: str, schema.CASE_ID: str}))
    wide = wide[[f for f in stable if f in wide.columns]]
    if cases is not None:
        table = cases.astype({schema.CASE_ID: str}).set_index(schema.CASE_ID).join(wide, how="inner")
    else:
        sites = values.drop_duplicates(schema.CASE_ID).set_index(schema.CASE_ID)[schema.SITE].astype(str)
        table = sites.to_frame().join(wide)
    table = table.rename_axis(schema.CASE_ID).reset_index()
    model_path = _write(table, out / f"{MODEL_TABLE}.{fmt}", fmt)
    manifest = tables["manifest"]
    sidecar = {
        "table": model_path.name, "sha256": file_digest(model_path), "created": now_utc(),
        "run": {"folder": str(run_dir.resolve()), "config_hash": manifest.get("config_hash"),
                "finished": manifest.get("finished")},
        "rows": "one per case (variant 'original', first repeat)", "n_cases": int(len(table)),
        "identifier_columns": [c for c in table.columns if c not in wide.columns],
        "features": {"kept": [c for c in wide.columns], "rule": rule},
        "harmonization": harmonization, "versions": versions(),
    }
    written["model_table"] = model_path
    written["sidecar"] = write_json(out / f"{MODEL_TABLE}.json", sidecar)
    return written
