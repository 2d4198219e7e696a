"""The SLURM recipe of the README: the job script dask-jobqueue builds for harmony's workers."""

from __future__ import annotations

import re

from dask_jobqueue import SLURMCluster


def test_slurm_job_script_asks_for_one_core_per_worker_and_starts_a_dask_worker():
    cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00", queue="normal",
                           account="radiomics", job_name="harmony", python="/opt/venv/bin/python",
                           job_script_prologue=["source /opt/venv/bin/activate"],
                           scheduler_options={"host": "127.0.0.1", "dashboard_address": None})
    try:
        script = cluster.job_script()
        address = cluster.scheduler_address
    finally:
        cluster.close()
    lines = script.splitlines()
    for expected in ("#SBATCH -J harmony", "#SBATCH -p normal", "#SBATCH -A radiomics", "#SBATCH -n 1",
                     "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G", "#SBATCH -t 02:00:00"):
        assert expected in lines, script
    assert lines.index("source /opt/venv/bin/activate") < len(lines) - 1
    worker = lines[-1]
    assert worker.startswith(f"/opt/venv/bin/python -m distributed.cli.dask_worker {address} "), worker
    assert re.search(r"--nthreads 1\b", worker) and "--memory-limit" in worker, worker
