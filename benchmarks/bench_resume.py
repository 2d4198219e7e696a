"""Resuming a finished 10,000-task extraction: the task store (sharded files + a digest index) against the
store it replaced (one flat folder, each task's status in its Parquet footer).

Both stores hold the same 10,000 finished tasks (100 features each, as the quickstart's settings give),
written by their own code, and the ``features.parquet`` of the finished run. Timed, for each store, what
``run_tasks`` does on resume besides planning: find the finished tasks (new: read the index and check every
file's sha256; old: list the folder and read every file's footer), then consolidate (new: keep the features
table, its digest and the task files' digests being unchanged; old: read every file into pandas,
concatenate, validate, write). Also timed: the new store's consolidation when the table must be rebuilt
(streamed row groups). The consolidated tables are compared. ``--tasks N`` changes
the count. The last line is machine-readable: ``resume_new=<s> resume_old=<s> ratio=<old/new>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.core.files import atomic_write, read_table, write_table
from harmony.extraction.adapter import feature_rows
from harmony.extraction.taskfiles import (
    FEATURES_NAME,
    TASKS_DIR,
    _consolidate,
    _finished,
    _write_task,
)
from harmony.extraction.tasks import Task

FEATURES = 100
META = b"harmony.task"


def synthetic(n: int) -> tuple[list[Task], list[dict[str, float]]]:
    rng = np.random.default_rng(0)
    names = [f"original_glcm_F{i:03d}" for i in range(FEATURES)]
    tasks = [Task(f"{i:032x}"[::-1], f"case{i // 10:05d}", f"site{i % 3}", f"v{i % 10}", 0) for i in range(n)]
    return tasks, [dict(zip(names, rng.normal(size=FEATURES).tolist())) for _ in range(n)]


# -- the store before: tasks/<key>.parquet, status in the footer ------------------------------------------

def old_write(out: Path, task: Task, features: dict[str, float]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = feature_rows(features, case_id=task.case_id, site=task.site, variant_id=task.variant_id,
                        repeat=task.repeat)
    meta = {"key": task.key, "case_id": task.case_id, "variant_id": task.variant_id, "repeat": task.repeat,
            "status": "ok", "error": "", "diagnostics": {}}
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META: json.dumps(meta).encode()})
    atomic_write(out / TASKS_DIR / f"{task.key}.parquet", lambda tmp: pq.write_table(table, tmp))


def old_resume(out: Path, tasks: list[Task]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    folder = out / TASKS_DIR
    present = {p.stem for p in folder.glob("*.parquet")}
    done = {t.key for t in tasks if t.key in present
            and json.loads(pq.read_schema(folder / f"{t.key}.parquet").metadata[META])["status"] == "ok"}
    frames = [pd.read_parquet(folder / f"{t.key}.parquet") for t in tasks if t.key in done]
    features = schema.FEATURES.validate(pd.concat(frames, ignore_index=True))
    write_table(features, out / FEATURES_NAME, schema.FEATURES)
    return features


def new_resume(out: Path, tasks: list[Task]) -> None:
    done = _finished(out, tasks, retry_failed=False)
    assert len(done) == len(tasks)
    _consolidate(out, tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    n = parser.parse_args().tasks
    tasks, results = synthetic(n)
    with tempfile.TemporaryDirectory(prefix="bench_resume_") as tmp:
        new, old = Path(tmp) / "new", Path(tmp) / "old"
        start = time.perf_counter()
        for task, features in zip(tasks, results):
            _write_task(new, task, features)
        print(f"new store: {n} tasks written in {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        for task, features in zip(tasks, results):
            old_write(old, task, features)
        print(f"old store: {n} tasks written in {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        new_resume(new, tasks)  # the finished run's consolidation
        t_build = time.perf_counter() - start
        old_resume(old, tasks)
        start = time.perf_counter()
        new_resume(new, tasks)
        t_new = time.perf_counter() - start
        start = time.perf_counter()
        expected = old_resume(old, tasks)
        t_old = time.perf_counter() - start
        same = read_table(new / FEATURES_NAME, schema.FEATURES).equals(expected)
    print(f"new store, finding the finished tasks and rebuilding features.parquet: {t_build:.1f} s")
    print(f"resume of {n} finished tasks: new store {t_new:.1f} s, old store {t_old:.1f} s; "
          f"consolidated tables equal: {same}")
    print(f"resume_new={t_new:.2f} resume_old={t_old:.2f} ratio={t_old / t_new:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
