"""Local worker processes: forked from a fork server, with the run's environment, gone when the run is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor

import psutil
import pytest

from harmony.extraction.executors import _PRELOAD, _context, _start_worker

pytestmark = pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="no fork server on this platform (workers are spawned)")

VARIABLE = "HARMONY_TEST_EXECUTOR_VARIABLE"


def test_workers_fork_from_a_server_that_imported_what_they_use():
    context = _context()
    assert context.get_start_method() == "forkserver"
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        loaded = pool.submit(eval, "sorted(__import__('sys').modules)").result()
    assert set(_PRELOAD) <= set(loaded)


def test_workers_get_the_environment_of_the_run_not_of_the_servers_start(monkeypatch):
    with ProcessPoolExecutor(1, mp_context=_context()) as pool:
        pool.submit(os.getpid).result()  # the fork server is running from here on
    monkeypatch.setenv(VARIABLE, "set after the server started")
    with ProcessPoolExecutor(1, mp_context=_context()) as pool:
        assert pool.submit(os.getenv, VARIABLE).result() is None  # what a forked worker sees by itself
    with ProcessPoolExecutor(1, mp_context=_context(), initializer=_start_worker,
                             initargs=(dict(os.environ),)) as pool:
        assert pool.submit(os.getenv, VARIABLE).result() == "set after the server started"


def test_a_killed_run_leaves_no_processes(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import os, time
        from concurrent.futures import ProcessPoolExecutor
        from harmony.extraction.executors import _context, _start_worker

        if __name__ == "__main__":
            pool = ProcessPoolExecutor(2, mp_context=_context(), initializer=_start_worker,
                                       initargs=(dict(os.environ),))
            busy = [pool.submit(time.sleep, 120) for _ in range(2)]
            while len(pool._processes) < 2:
                time.sleep(0.05)
            print("ready", flush=True)
            time.sleep(120)
    """))
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "ready"
        descendants = psutil.Process(run.pid).children(recursive=True)
        assert len(descendants) >= 3  # the fork server and two workers (and the resource tracker)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 15
    while (alive := [p.pid for p in descendants if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"processes of the killed run still running: {alive}"


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # an orphan's zombie waits for init, which may not reap
    except psutil.NoSuchProcess:
        return False
