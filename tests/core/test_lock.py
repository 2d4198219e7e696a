"""The run lock: a second live run is refused with the holder's pid, a dead run's lock is taken over."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest

from harmony.core.lock import LOCK_NAME, LockError, RunLock


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path):
    other = _sleeper()
    try:
        lock = {"pid": other.pid, "host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}
        (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
        with pytest.raises(LockError, match=rf"another harmony run \(pid {other.pid} on .*is using this"):
            with RunLock(tmp_path):
                pass
    finally:
        other.kill()
        other.wait()
    with RunLock(tmp_path):  # the holder is dead: its lock is stale
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps({**lock, "host": "elsewhere"}))
    with pytest.raises(LockError, match="elsewhere"):  # another host's pid cannot be checked
        with RunLock(tmp_path):
            pass


# -- newcomers, nested folders, temp files ------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _contend(directory, barrier, results) -> None:
    """One newcomer: wait for the others, try the lock, hold it a moment when taken."""
    barrier.wait()
    try:
        with RunLock(directory):
            results.put(("took", os.getpid(), ""))
            time.sleep(1.5)  # the others try while it is held
    except LockError as exc:
        results.put(("refused", os.getpid(), str(exc)))


def test_newcomers_racing_for_a_stale_lock_one_takes_it(tmp_path):
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    context = multiprocessing.get_context("fork")
    n = 6
    barrier, results = context.Barrier(n), context.Queue()
    procs = [context.Process(target=_contend, args=(tmp_path, barrier, results)) for _ in range(n)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    took = [pid for what, pid, _ in outcomes if what == "took"]
    assert len(took) == 1, outcomes
    for what, _, message in outcomes:
        if what == "refused":
            assert f"pid {took[0]} on " in message or "is starting" in message, message
    assert not (tmp_path / LOCK_NAME).exists()


def _hold(directory, ready, release) -> None:
    with RunLock(directory):
        ready.set()
        release.wait(60)


@pytest.fixture
def held_elsewhere(tmp_path):
    """``tmp_path/run`` locked by another live process until the test ends."""
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    proc = context.Process(target=_hold, args=(tmp_path / "run", ready, release))
    proc.start()
    assert ready.wait(30)
    yield tmp_path / "run", proc.pid
    release.set()
    proc.join(30)


@pytest.mark.parametrize("where", ["run", "run/reliability", "run/extraction/tasks", "."])
def test_a_folder_inside_above_or_at_a_held_run_is_refused(held_elsewhere, where, tmp_path):
    _, pid = held_elsewhere
    with pytest.raises(LockError, match=rf"pid {pid} on .*started 20.*is using"):
        with RunLock(tmp_path / where):
            pass


def test_the_holders_own_stage_folders_are_not_refused(tmp_path):
    with RunLock(tmp_path / "run"), RunLock(tmp_path / "run" / "reliability") as inner:
        assert inner.path.is_file()


def test_temp_files_of_a_killed_run_are_removed_on_entering(tmp_path):
    left = [tmp_path / ".manifest.json.k2x9_q0a.tmp", tmp_path / "extraction" / "tasks" / ".ab.parquet.0123abcd.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / "extraction" / "features.parquet"]
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with RunLock(tmp_path):
        assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
