"""The run directory's task files: one Parquet file per finished task, written atomically, read on resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.files import atomic_write
from harmony.extraction.adapter import feature_rows, split_result
from harmony.extraction.tasks import Task

__all__ = ["TASKS_DIR", "FEATURES_NAME", "FAILURES_NAME", "OK", "FAILED"]

logger = logging.getLogger(__name__)


#: Folder of the task files in an extraction's output directory.
TASKS_DIR = "tasks"
#: The consolidated features table of an extraction (schema.FEATURES).
FEATURES_NAME = "features.parquet"
#: The consolidated failures table of an extraction (schema.FAILURES).
FAILURES_NAME = "failures.parquet"
_META_KEY = b"harmony.task"
#: The ``status`` recorded in a task file's metadata.
OK, FAILED = "ok", "failed"


def _task_path(out: Path, key: str) -> Path:
    return out / TASKS_DIR / f"{key}.parquet"


def _write_task(out: Path, task: Task, result: dict[str, Any] | str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    failed = isinstance(result, str)
    extraction = split_result({} if failed else result)
    rows = feature_rows(extraction.features, case_id=task.case_id, site=task.site,
                        variant_id=task.variant_id, repeat=task.repeat)
    meta = {"key": task.key, "case_id": task.case_id, "variant_id": task.variant_id, "repeat": task.repeat,
            "status": FAILED if failed else OK, "error": result if failed else "",
            "diagnostics": extraction.diagnostics}
    table = pa.Table.from_pandas(rows, preserve_index=False)  # validated once, when consolidated
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    atomic_write(_task_path(out, task.key), lambda tmp: pq.write_table(table, tmp))


def _task_status(path: Path) -> dict | None:
    """The metadata of a task file, or None when it is unreadable (then the task runs again)."""
    import pyarrow.parquet as pq

    try:
        return json.loads(pq.read_schema(path).metadata[_META_KEY])
    except Exception as exc:  # a damaged file is not a finished task
        logger.warning("ignoring unreadable task file %s (%s)", path, exc)
        return None


def _finished(out: Path, tasks: list[Task], retry_failed: bool) -> dict[str, dict]:
    """The planned tasks that have a result file (failures too, unless ``retry_failed``)."""
    folder = out / TASKS_DIR
    for tmp in folder.glob(".*.tmp"):  # left by a killed write; we hold the lock, so nobody is writing
        tmp.unlink(missing_ok=True)
    present = {p.stem for p in folder.glob("*.parquet")} if folder.is_dir() else set()
    done = {}
    for task in tasks:
        if task.key in present and (meta := _task_status(_task_path(out, task.key))) is not None:
            if meta["status"] == OK or not retry_failed:
                done[task.key] = meta
    return done


def _consolidate(out: Path, tasks: list[Task]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """The features and failures tables, and per case the diagnostics its task files hold."""
    frames, failures, diagnostics = [], [], {}
    for task in tasks:
        path = _task_path(out, task.key)
        meta = _task_status(path)
        if meta is None:
            raise HarmonyError(f"{path}: the result of task {task} is missing or unreadable; re-run to make it")
        if meta["status"] == FAILED:
            failures.append({schema.CASE_ID: task.case_id, schema.VARIANT_ID: task.variant_id,
                             schema.REPEAT: task.repeat, schema.ERROR: meta["error"]})
        else:
            frames.append(pd.read_parquet(path))
        if meta.get("diagnostics"):
            diagnostics[task.case_id] = meta["diagnostics"]
    features = pd.concat(frames, ignore_index=True) if frames else schema.FEATURES.empty()
    failed = pd.DataFrame(failures, columns=schema.FAILURES.names) if failures else schema.FAILURES.empty()
    return (schema.FEATURES.validate(features, source=str(out)), schema.FAILURES.validate(failed, source=str(out)),
            diagnostics)
