"""The ``[engine]`` settings of an experiment: where and how often the extraction tasks run."""

from __future__ import annotations

from harmony.core.config import Field, Section

__all__ = ["EXECUTORS", "STANDARDS", "SETTINGS"]

#: Where an extraction's work can run: ``[engine] executor`` and ``harmony extract --executor``.
EXECUTORS = ("serial", "processes", "dask")

#: What an extraction follows: ``[extraction] standard`` (IBSI mode: :mod:`harmony.extraction.ibsi`).
STANDARDS = ("pyradiomics", "ibsi")

#: The ``[engine]`` section of an experiment config.
SETTINGS = Section(
    {
        "executor": Field(str, "processes", choices=EXECUTORS,
                          doc="serial (in this process), processes (local worker processes) or dask."),
        "workers": Field(int, 0, min=0, doc="Worker count; 0 means one per core."),
        "scheduler": Field(str, "", doc="Dask scheduler address; empty starts a LocalCluster."),
        "threads_per_worker": Field(int, 0, min=0, doc="SimpleITK and BLAS threads of each worker; 0: 1 on a Dask "
                                    "cluster's workers, else this machine's cores shared out (one worker: all)."),
        "repeats": Field(int, 1, min=1, doc="Repeats of every (case, variant) task."),
        "retry_failed": Field(bool, False, doc="On resume, run again the tasks that failed before."),
    }
)
