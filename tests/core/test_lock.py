"""The run lock: a second live run is refused with the holder's pid, a dead run's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

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
