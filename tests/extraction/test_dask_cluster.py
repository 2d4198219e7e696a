"""A real Dask cluster: `dask scheduler` and two `dask worker` processes on loopback, `harmony run --executor
dask` against it, bit for bit the serial run, also when a worker is killed in the middle of the run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harmony.core import schema
from harmony.core.files import read_table
from harmony.core.manifest import MANIFEST_NAME
from harmony.extraction.taskfiles import INDEX_NAME, TASKS_DIR
from harmony.workflows.layout import EXTRACTION_DIR, FILES
from harmony.workflows.run import run_config
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# The quickstart made tiny: 6 subjects (2 per scanner), a 24^3 grid, all four perturbation families
# (42 tasks in 18 work units); no harmonization or report, which do not depend on the executor.
TINY = ["cases.cohort.cohort.subjects=6", "cases.cohort.grid.size=[24,24,24]", "reliability.bootstrap=100",
        "harmonization.enabled=false", "report.enabled=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "MPLBACKEND": "Agg"}


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the process and anything it started
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-thread workers (no nanny: a killed worker stays dead) on random ports."""
    from dask.distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    processes: list[subprocess.Popen] = []

    def start(*args: str, log: str) -> subprocess.Popen:
        with open(folder / log, "w") as out:
            processes.append(subprocess.Popen([str(BIN / "dask"), *args], stdout=out, stderr=subprocess.STDOUT,
                                              env=_env(), cwd=folder, start_new_session=True))
        return processes[-1]

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard",
              log="scheduler.log")
        workers = [start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                         "--memory-limit", "0", "--name", f"w{i}", "--local-directory", str(folder / f"w{i}"),
                         log=f"worker{i}.log") for i in range(2)]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address, workers
    finally:
        for process in processes:
            _stop(process)


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "run"
    run_config("quickstart", [*TINY, "engine.executor=serial"], out=str(out), progress=False)
    return out


def _harmony_run(address: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "harmony"), "run", "quickstart", "--out", str(out), "--executor", "dask",
                             "--workers", "2", "--quiet", "--set", f'engine.scheduler="{address}"',
                             *(a for s in TINY for a in ("--set", s))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True)


def _assert_same_run(got: Path, expected: Path) -> None:
    for key, spec in (("features", schema.FEATURES), ("failures", schema.FAILURES),
                      ("reliability", schema.RELIABILITY)):
        pd.testing.assert_frame_equal(read_table(got / FILES[key], spec), read_table(expected / FILES[key], spec),
                                      check_exact=True)


def _index_lines(out: Path) -> list[str]:
    path = out / EXTRACTION_DIR / TASKS_DIR / INDEX_NAME
    return path.read_text().splitlines() if path.is_file() else []


def test_a_run_on_a_dask_cluster_equals_the_serial_run(cluster, serial_run, tmp_path):
    address, _ = cluster
    process = _harmony_run(address, tmp_path / "run")
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        _stop(process)
    assert process.returncode == 0, output
    _assert_same_run(tmp_path / "run", serial_run)


def test_a_worker_killed_mid_run_costs_nothing(cluster, serial_run, tmp_path):
    address, workers = cluster
    out = tmp_path / "run"
    process = _harmony_run(address, out)
    try:
        deadline = time.monotonic() + 180
        while len(_index_lines(out)) < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        finished_at_kill = len(_index_lines(out))
        assert process.poll() is None, "the run ended before a worker could be killed"
        os.kill(workers[0].pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=240)
    finally:
        _stop(process)
    assert process.returncode == 0, output
    lines = _index_lines(out)
    total = json.loads((serial_run / MANIFEST_NAME).read_text())["tasks"]["total"]
    assert 4 <= finished_at_kill < total == len(lines)  # killed mid-run; every task written once, none twice
    assert len({json.loads(line.rpartition("\t")[0])["key"] for line in lines}) == total
    assert len(list((out / EXTRACTION_DIR / TASKS_DIR).glob("*/*.parquet"))) == total
    _assert_same_run(out, serial_run)
