"""Where units run: in this process, in local worker processes, or on a Dask cluster."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from harmony.core.errors import HarmonyError
from harmony.extraction.work import _run_unit, _Unit

__all__ = ["execute", "start_fork_server"]


def _serial(units: list[_Unit]) -> Iterator[tuple[_Unit, tuple[dict, float]]]:
    for unit in units:
        yield unit, _run_unit(unit)


#: Imported once by the fork server, so that the workers forked from it start with them: the worker's modules
#: (0.4 s) and what its first unit imports (pyradiomics and the libraries it and harmony import when used:
#: 0.2-0.3 s), which a spawned worker imports itself, in every worker of every run.
_PRELOAD = ("harmony.extraction.work", "radiomics.featureextractor", "pykwalify.core", "pywt", "scipy.ndimage",
            "threadpoolctl")


def _context() -> multiprocessing.context.BaseContext:
    """Workers fork from a fork server, else (Windows) are spawned; never forked from this process, whose SimpleITK
    and pyradiomics threads and global state a fork would copy half-made.

    The fork server is a fresh, single-threaded process that imported :data:`_PRELOAD` (and ``__main__``) once;
    it starts with this process's first run and lasts as long as this process, so later runs start their workers
    at once. Modules the user asked it to preload are kept.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    server = getattr(forkserver, "_forkserver", None)
    asked = list(getattr(server, "_preload_modules", None) or ["__main__"])
    context.set_forkserver_preload(asked + [m for m in _PRELOAD if m not in asked])  # no effect once it runs
    return context


def start_fork_server(executor: str) -> None:
    """Start the fork server that local workers fork from, if ``executor`` uses one and it is not running yet.

    It then imports the worker modules while this process plans the run.

    Parameters
    ----------
    executor : {"serial", "processes", "dask"}
        Only "processes" uses local workers.

    Examples
    --------
    >>> start_fork_server("processes")  # the later runs of this process fork their workers from it
    """
    if executor == "processes" and _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _start_worker(environ: dict[str, str]) -> None:
    """Worker initializer: this run's environment (a forked worker has the fork server's, from when it started),
    and exit when the process that started the run is gone (killed runs leave no workers)."""
    os.environ.clear()
    os.environ.update(environ)
    parent = multiprocessing.parent_process()

    def watch() -> None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes: it exited or was killed
        os._exit(1)

    if parent is not None:
        threading.Thread(target=watch, daemon=True, name="harmony-parent-watch").start()


def _next_unit(pending: list[_Unit], after: _Unit) -> _Unit:
    """The next unit for the worker that just finished ``after``: another part of the same group if one is left
    (that worker holds the group's images: ``_PREPARED``), else the costliest pending one."""
    same = next((i for i, u in enumerate(pending) if u.group is after.group), 0)
    return pending.pop(same)


def _processes(units: list[_Unit], workers: int) -> Iterator[tuple[_Unit, tuple[dict, float]]]:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_start_worker,
                               initargs=(dict(os.environ),))
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
