"""Where units run: in this process, in local worker processes, or on a Dask cluster."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from harmony.core.errors import HarmonyError
from harmony.extraction.work import _run_unit, _Unit

__all__ = ["execute"]


def _serial(units: list[_Unit]) -> Iterator[tuple[_Unit, tuple[dict, float]]]:
    for unit in units:
        yield unit, _run_unit(unit)


def _watch_parent(parent: int) -> None:
    """Worker initializer: exit when the run that started this worker is gone (killed runs leave no workers)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="harmony-parent-watch").start()


def _next_unit(pending: list[_Unit], after: _Unit) -> _Unit:
    """The next unit for the worker that just finished ``after``: another part of the same group if one is left
    (that worker holds the group's images: ``_PREPARED``), else the costliest pending one."""
    same = next((i for i, u in enumerate(pending) if u.group is after.group), 0)
    return pending.pop(same)


def _processes(units: list[_Unit], workers: int) -> Iterator[tuple[_Unit, tuple[dict, float]]]:
    # spawn: SimpleITK and pyradiomics hold threads and global state that a fork would copy half-made
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_watch_parent, initargs=(os.getpid(),))
    finished = False
    pending = list(units)  # longest first
    try:
        # one unit in flight per worker: the worker that finishes is the one that takes the next unit
        futures = {pool.submit(_run_unit, unit): unit for unit in [pending.pop(0) for _ in units[:workers]]}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            finished_units = [(future, futures.pop(future)) for future in done]
            for _, unit in finished_units:  # every free worker gets its next unit before the results are handled
                if pending:
                    following = _next_unit(pending, unit)
                    futures[pool.submit(_run_unit, following)] = following
            for future, unit in finished_units:
                yield unit, future.result()
        finished = True
    finally:
        # every result in: the idle workers exit while the run consolidates (waiting costs their teardown);
        # on an error, wait for them, so that none outlives it
        pool.shutdown(wait=not finished, cancel_futures=True)


def _dask(units: list[_Unit], workers: int, scheduler: str) -> Iterator[tuple[_Unit, tuple[dict, float]]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise HarmonyError(f"executor 'dask' needs dask[distributed] ({exc}); install harmony-radiomics[dask]") \
            from None

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {client.submit(_run_unit, unit, pure=False): unit for unit in units}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def execute(units: list[_Unit], executor: str, workers: int,
            scheduler: str) -> Iterator[tuple[_Unit, tuple[dict, float]]]:
    """Run the units on ``executor`` and yield ``(unit, result)`` as each finishes (in any order).

    Parameters
    ----------
    units : list of work units
        From the engine's plan (:func:`harmony.extraction.work._units`).
    executor : {"serial", "processes", "dask"}
        This process, spawned local worker processes, or a Dask cluster.
    workers : int
        Worker processes (processes, and a local Dask cluster).
    scheduler : str
        A Dask scheduler address; empty starts a LocalCluster.

    Returns
    -------
    iterator of (unit, (dict, float))
        Each unit with its result: per task key, the features (a dict) or the error text; and the seconds
        it took in its worker.
    """
    if executor == "serial":
        return _serial(units)
    if executor == "processes":
        return _processes(units, workers)
    return _dask(units, workers, scheduler)
