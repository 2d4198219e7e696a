"""The run directory's task store: one Parquet file per finished task, and an append-only index of their digests.

Layout, under ``<out>/tasks``::

    index.jsonl              one line per task file written: its key, sha256, status, error and (original
                             variant) diagnostics, then a tab and the digest of that JSON text
    <k[:2]>/<key>.parquet    the task's feature rows (none if it failed), written atomically; 256 shard
                             folders keep every folder small at tens of thousands of tasks
    consolidated.json        the digests of the task files and of the features table last consolidated

A resume reads the index, not the task files' footers, and checks each finished file's bytes against the
digest recorded when it was written: a file that is missing or differs (damage a Parquet footer does not
reveal) is reported and computed again. A task whose file was written but whose index line was not (a kill
between the two) is simply computed again. Consolidation streams the task files into ``features.parquet``
row group by row group, so the extraction's results are never all in memory at once; resuming a finished
run keeps a features table that is still what its task files consolidate into.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.files import atomic_write
from harmony.extraction.adapter import feature_rows, split_result
from harmony.extraction.tasks import Task

__all__ = ["CONSOLIDATED_NAME", "FAILED", "FAILURES_NAME", "FEATURES_NAME", "INDEX_NAME", "OK", "TASKS_DIR"]

logger = logging.getLogger(__name__)


#: Folder of the task store in an extraction's output directory.
TASKS_DIR = "tasks"
#: The task store's index (under TASKS_DIR).
INDEX_NAME = "index.jsonl"
#: The consolidated features table of an extraction (schema.FEATURES).
FEATURES_NAME = "features.parquet"
#: The consolidated failures table of an extraction (schema.FAILURES).
FAILURES_NAME = "failures.parquet"
_META_KEY = b"harmony.task"
#: The ``status`` recorded for a task.
OK, FAILED = "ok", "failed"
#: What the features table was consolidated from (under TASKS_DIR): digests of the task list and of the table.
CONSOLIDATED_NAME = "consolidated.json"
#: Feature rows per row group of the consolidated features table (bounds consolidation's memory).
_ROW_GROUP_ROWS = 262_144
#: Task files read at a time (by a few threads) while consolidating.
_READ_CHUNK = 256
#: Damaged task files named one by one in the log before the rest are only counted.
_NAMED = 5


def _task_path(out: Path, key: str) -> Path:
    return out / TASKS_DIR / key[:2] / f"{key}.parquet"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_line(record: dict[str, Any]) -> str:
    text = json.dumps(record, sort_keys=True)
    return f"{text}\t{_sha256(text.encode())[:16]}\n"


def _write_task(out: Path, task: Task, result: dict[str, Any] | str) -> None:
    """Write the task's file atomically, then append its record (with the file's sha256) to the index."""
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
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    # no fsync per file: the index's digest is checked before a file is trusted, and a file a power loss
    # left short is computed again
    atomic_write(_task_path(out, task.key), lambda tmp: tmp.write_bytes(data), sync=False)
    with open(out / TASKS_DIR / INDEX_NAME, "a", encoding="utf-8") as index:  # after the file: never ahead of it
        index.write(_record_line({**meta, "sha256": _sha256(data)}))


def _read_index(out: Path) -> dict[str, dict]:
    """The index's last intact record per key (a line cut by a kill, or altered, is skipped: that task reruns)."""
    path = out / TASKS_DIR / INDEX_NAME
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    skipped = 0
    with open(path, encoding="utf-8", errors="replace") as index:
        for line in index:
            text, _, check = line.rstrip("\n").rpartition("\t")
            try:
                if _sha256(text.encode())[:16] != check:
                    raise ValueError("digest")
                record = json.loads(text)
                records[record["key"]] = record
            except (ValueError, KeyError, TypeError):
                skipped += 1
    if skipped:
        logger.warning("%s: %d damaged or incomplete line(s) skipped; their tasks are computed again", path, skipped)
    return records


def _finished(out: Path, tasks: list[Task], retry_failed: bool) -> dict[str, dict]:
    """The planned tasks whose file is intact (failures too, unless ``retry_failed``), by key: their records.

    Removes what a killed run left: temporary files, and task files that do not match their recorded digest
    (each is logged, and its task computed again).
    """
    folder = out / TASKS_DIR
    for tmp in (*folder.glob(".*.tmp"), *folder.glob("*/.*.tmp")):  # left by a killed write; we hold the lock
        tmp.unlink(missing_ok=True)
    index = folder / INDEX_NAME
    if index.is_file() and index.stat().st_size:
        with open(index, "rb+") as fh:  # a line cut by a kill: end it, so that the next record starts a line
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
    records = _read_index(out)
    done, damaged = {}, []
    for task in tasks:
        record = records.get(task.key)
        if record is None or (record["status"] != OK and retry_failed):
            continue
        path = _task_path(out, task.key)
        try:
            intact = _sha256(path.read_bytes()) == record["sha256"]
        except OSError:
            intact = False
        if intact:
            done[task.key] = record
        else:
            damaged.append(task)
            path.unlink(missing_ok=True)
    for task in damaged[:_NAMED]:
        logger.warning("task file of case %r, variant %r, repeat %d is missing or does not match the digest "
                       "recorded when it was written: computing it again", task.case_id, task.variant_id, task.repeat)
    if len(damaged) > _NAMED:
        logger.warning("... and %d more damaged task file(s), computed again", len(damaged) - _NAMED)
    return done


def _features_schema():
    import pyarrow as pa

    types = {"str": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    return pa.schema([(c.name, types[c.dtype]) for c in schema.FEATURES.columns])


def _read_task_table(out: Path, task: Task, record: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _task_path(out, task.key)
    data = path.read_bytes() if path.is_file() else b""
    if _sha256(data) != record["sha256"]:
        raise HarmonyError(f"{path}: the result of task {task} changed after it was written; re-run to make it")
    return pq.read_table(pa.BufferReader(data))


def _consolidate(out: Path, tasks: list[Task]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Stream the task files, in plan order, into ``features.parquet``; return the failures and diagnostics.

    Each row group is validated (:data:`harmony.core.schema.FEATURES`) before it is written; the file is
    written beside its place and renamed onto it when complete. When ``features.parquet`` is what the same
    task files consolidated into before (``CONSOLIDATED_NAME`` records the digests of both), it is kept.
    """
    import pyarrow.parquet as pq

    records = _read_index(out)
    failures, diagnostics, ok = [], {}, []
    for task in tasks:
        record = records.get(task.key)
        if record is None:
            raise HarmonyError(f"{_task_path(out, task.key)}: the result of task {task} is missing; re-run to make it")
        if record["status"] == FAILED:
            failures.append({schema.CASE_ID: task.case_id, schema.VARIANT_ID: task.variant_id,
                             schema.REPEAT: task.repeat, schema.ERROR: record["error"]})
        else:
            ok.append((task, record))
        if record.get("diagnostics"):
            diagnostics[task.case_id] = record["diagnostics"]
    failed = pd.DataFrame(failures, columns=schema.FAILURES.names) if failures else schema.FAILURES.empty()
    failed = schema.FAILURES.validate(failed, source=str(out))
    plan_digest = _sha256("".join(f"{r['key']}:{r['sha256']};" for _, r in ok).encode())
    features, note = out / FEATURES_NAME, out / TASKS_DIR / CONSOLIDATED_NAME
    if features.is_file() and note.is_file():
        try:
            if json.loads(note.read_text()) == {"tasks": plan_digest, "features": _sha256(features.read_bytes())}:
                return failed, diagnostics
        except ValueError:
            pass  # an unreadable note: consolidate again
    target = _features_schema()

    def row_groups() -> Iterable:
        from concurrent.futures import ThreadPoolExecutor

        pending, n = [], 0
        with ThreadPoolExecutor(4) as pool:  # pyarrow reads outside the GIL
            for first in range(0, len(ok), _READ_CHUNK):
                for table in pool.map(lambda item: _read_task_table(out, *item), ok[first:first + _READ_CHUNK]):
                    pending.append(table)
                    n += table.num_rows
                    if n >= _ROW_GROUP_ROWS:
                        yield _checked(pending, target, out)
                        pending, n = [], 0
        if pending:
            yield _checked(pending, target, out)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, target) as writer:
            for group in row_groups():
                writer.write_table(group)

    atomic_write(features, write)
    atomic_write(note, lambda tmp: tmp.write_text(json.dumps({"tasks": plan_digest,
                                                              "features": _sha256(features.read_bytes())})))
    return failed, diagnostics


def _checked(tables: list, target, out: Path):
    """The tables as one, validated against the features schema, with ``target``'s plain column types."""
    import pyarrow as pa

    frame = pa.concat_tables(tables).to_pandas() if tables else schema.FEATURES.empty()
    frame = schema.FEATURES.validate(frame, source=str(out))
    return pa.Table.from_pandas(frame.astype({c.name: object for c in schema.FEATURES.columns if c.categorical}),
                                schema=target, preserve_index=False)
