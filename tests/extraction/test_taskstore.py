"""The task store: sharded files, the digest index, damage found on resume, streamed consolidation."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harmony.core import schema
from harmony.extraction.engine import run_tasks
from harmony.extraction.taskfiles import INDEX_NAME, TASKS_DIR, _read_index, _task_path
from tests.conftest import ENGINE_PARAMS, sorted_features


def _copy_run(run, folder):
    shutil.copytree(run.out_dir / TASKS_DIR, folder / TASKS_DIR)
    return folder


def _flip_a_value(path) -> None:
    """Change bytes inside the value column's data, the footer intact: the file still reads, with other values."""
    data = bytearray(path.read_bytes())
    before = pq.read_table(path).column(schema.VALUE).to_numpy()
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(0).column(meta.schema.names.index(schema.VALUE))
    start, size = column.data_page_offset, column.total_compressed_size
    for offset in range(start + size - 1, start, -1):  # from the end of the chunk: the values, not the header
        damaged = bytearray(data)
        damaged[offset] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            after = pq.read_table(path).column(schema.VALUE).to_numpy()
        except Exception:  # noqa: BLE001, S112 - this byte broke the page; try another
            continue
        if not np.array_equal(before, after, equal_nan=True):
            return
    raise AssertionError(f"no byte of {path} changes a value and keeps the file readable")


def test_bytes_flipped_inside_a_task_file_are_found_reported_and_recomputed(
        engine_cohort, engine_variants, engine_serial_run, tmp_path, caplog):
    out = _copy_run(engine_serial_run, tmp_path)
    task = next(iter(_read_index(out).values()))
    _flip_a_value(_task_path(out, task["key"]))
    with caplog.at_level(logging.WARNING, logger="harmony.extraction.taskfiles"):
        run = run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, out, executor="serial", progress=False)
    assert (run.total, run.resumed, run.done) == (24, 23, 24)
    assert f"case {task['case_id']!r}, variant {task['variant_id']!r}" in caplog.text
    assert "does not match the digest" in caplog.text
    pd.testing.assert_frame_equal(sorted_features(run.features), sorted_features(engine_serial_run.features),
                                  check_exact=True)


def test_damaged_or_cut_index_lines_only_rerun_their_tasks(engine_cohort, engine_variants, engine_serial_run,
                                                           tmp_path):
    out = _copy_run(engine_serial_run, tmp_path)
    index = out / TASKS_DIR / INDEX_NAME
    lines = index.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"status": "ok"', '"status": "failed"')  # its line digest no longer matches
    index.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the last line cut by a kill
    run = run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, out, executor="serial", progress=False)
    assert (run.resumed, run.done, run.failed) == (22, 24, 0)
    pd.testing.assert_frame_equal(sorted_features(run.features), sorted_features(engine_serial_run.features),
                                  check_exact=True)


def test_task_files_are_sharded_and_consolidation_streams_row_groups(engine_cohort, engine_variants,
                                                                    engine_serial_run, tmp_path, monkeypatch):
    from harmony.extraction import taskfiles

    out = engine_serial_run.out_dir
    shards = {p.parent.name for p in (out / TASKS_DIR).glob("*/*.parquet")}
    assert all(len(s) == 2 for s in shards) and len(shards) > 1
    assert len(_read_index(out)) == 24
    monkeypatch.setattr(taskfiles, "_ROW_GROUP_ROWS", 50)  # several row groups, each validated and written alone
    run = run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, _copy_run(engine_serial_run, tmp_path),
                    executor="serial", progress=False)
    assert run.resumed == 24
    assert pq.ParquetFile(tmp_path / taskfiles.FEATURES_NAME).metadata.num_row_groups > 1
    pd.testing.assert_frame_equal(run.features, engine_serial_run.features, check_exact=True)


def test_a_finished_run_resumed_keeps_its_features_table_unless_it_was_damaged(engine_cohort, engine_variants,
                                                                             engine_serial_run, tmp_path):
    from harmony.extraction.taskfiles import FEATURES_NAME

    out = _copy_run(engine_serial_run, tmp_path)
    shutil.copy(engine_serial_run.out_dir / FEATURES_NAME, out / FEATURES_NAME)
    written = (out / FEATURES_NAME).stat().st_mtime_ns
    run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, out, executor="serial", progress=False)
    assert (out / FEATURES_NAME).stat().st_mtime_ns == written  # still what the task files consolidate into
    data = bytearray((out / FEATURES_NAME).read_bytes())
    data[len(data) // 3] ^= 0xFF
    (out / FEATURES_NAME).write_bytes(bytes(data))
    run = run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, out, executor="serial", progress=False)
    pd.testing.assert_frame_equal(run.features, engine_serial_run.features, check_exact=True)
