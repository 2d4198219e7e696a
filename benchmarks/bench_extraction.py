"""Time harmony's extraction engine against a naive loop of pyradiomics ``execute`` on the same 27 variants.

Case: ``lung1`` (CT, 512x512x48) from the pyradiomics sample data in ``$HARMONY_REFERENCE_DATA``
(default ``../shared/data``). Settings: Original + LoG (sigma 1, 2, 3 mm) + Wavelet, all feature classes,
binWidth 25. Design: 3 image variants (the original and two Gaussian noise draws of 10 HU) x 3 bin widths
(12.5, 25, 50) x 3 masks (eroded 1 mm, as drawn, dilated 1 mm) = 27 variants.

(a) naive: for each variant, ``variant.apply`` then ``RadiomicsFeatureExtractor.execute``;
(b) ``engine.run_tasks`` in this process (``executor="serial"``), SimpleITK's filters threaded on all cores;
(c) ``engine.run_tasks`` with one worker process of one thread (``threads_per_worker=1``);
(d) ``engine.run_tasks`` with two worker processes, one thread each (the cores shared out).
The feature values of (b), (c) and (d) are compared with (a). "Workers add up" is (c) / (d): one worker against
two, each worker a single-threaded process. Beside it, the ideal from the work units' own costs (seconds each
took in its worker during (d)): their sum over the longest-processing-time schedule's makespan on two workers.
(b) / (d) is the gain over the threaded single process: two single-threaded workers cannot beat wall(b) over
the units' makespan, the bound printed with it.
Local workers fork from a fork server that the first run of a process starts; it imports the worker modules
once, and the main module (this script, whose imports of pandas and the engine are made only when it runs).
The fork server is started before the clock, as by this process's first run, so that every round compares the
same start-up. ``--cold`` adds what a fresh process's first run gains (every ``harmony`` command): (c) and (d)
run in new processes, each starting its own fork server.
``--ceiling RUNS`` adds what two worker processes can gain at most on this machine: RUNS plain executes of lung1
(the same settings) in one single-threaded worker process against two, both pools started and warmed before the
clock starts, so that the ratio holds no start-up, planning or scheduling.
(b), (c) and (d) run in ``--repeats`` rounds (default 3) and the best time of each counts, as ``timeit`` does:
on a shared machine, other work only ever adds time. The ratio (c) / (d) of each round is printed too, with its
median. ``--skip-naive`` leaves (a) out (no ratios to it). The last line is machine-readable:
``ratio_1worker=<naive/(b)> ratio_2workers=<naive/(d)> workers_2v1=<(c)/(d)>
workers_2v1_median=<median over rounds> threaded_2v1=<(b)/(d)> [cold_2v1=<(c)/(d), fresh processes>]
[ceiling_2v1=<one/two warmed processes>] max_rel_diff=<largest relative difference>``.
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if __name__ == "__main__":  # not in the workers, which re-import this script as __mp_main__ (see above)
    import numpy as np
    import pandas as pd
    import SimpleITK as sitk

    from harmony.core import schema
    from harmony.core.files import read_table
    from harmony.extraction.adapter import make_extractor, split_result
    from harmony.extraction.engine import run_tasks
    from harmony.extraction.executors import start_fork_server
    from harmony.perturb.design import expand_design

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HARMONY_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "pyradiomics_cases"
PARAMS = {"setting": {"binWidth": 25, "label": 1},
          "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0, 3.0]}, "Wavelet": {}}}
DESIGN = {"grid": [{"noise": {"level": [0.0, 10.0], "repeats": 2},
                    "erode_dilate": {"distance_mm": [-1.0, 0.0, 1.0]},
                    "bin_width": {"width": [12.5, 25.0, 50.0]}}]}
CASE_ID = "lung1"


def naive(image: sitk.Image, mask: sitk.Image, variants: list) -> pd.DataFrame:
    """What a user without harmony writes: perturb, then execute, one variant at a time."""
    extractors: dict[str, object] = {}
    rows = []
    for variant in variants:
        params = variant.apply_settings(PARAMS)
        key = repr(params)
        if key not in extractors:
            extractors[key] = make_extractor(params)
        v_image, v_mask = variant.apply(image, mask, case_id=CASE_ID)
        features = split_result(extractors[key].execute(v_image, v_mask)).features
        rows += [(variant.variant_id, name, value) for name, value in features.items()]
    return pd.DataFrame(rows, columns=[schema.VARIANT_ID, schema.FEATURE, schema.VALUE])


def values(features: pd.DataFrame) -> pd.Series:
    return features.set_index([schema.VARIANT_ID, schema.FEATURE])[schema.VALUE].sort_index()


def max_rel_diff(a: pd.Series, b: pd.Series) -> float:
    if not a.index.equals(b.index):
        raise SystemExit(f"feature sets differ: {len(a.index.symmetric_difference(b.index))} keys")
    x, y = a.to_numpy(), b.to_numpy()
    both_nan = np.isnan(x) & np.isnan(y)
    diff = np.abs(x - y) / np.maximum(np.maximum(np.abs(x), np.abs(y)), np.finfo(float).tiny)
    return float(np.max(np.where(both_nan, 0.0, diff)))


def lpt_makespan(costs: list[float], workers: int) -> float:
    """Longest processing time first, each unit to the least loaded worker: the schedule's length."""
    loads = [0.0] * workers
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


def _single_threaded() -> None:
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    threadpool_limits(1)


def _execute(_: int) -> float:
    """One execute of lung1 in this worker; its seconds."""
    import SimpleITK as sitk

    from harmony.extraction.adapter import make_extractor  # the workers do not make the imports above

    image, mask = (sitk.ReadImage(str(DATA / f"lung1_{part}.nrrd")) for part in ("image", "label"))
    start = time.perf_counter()
    make_extractor(PARAMS).execute(image, mask)
    return time.perf_counter() - start


def ceiling(workers: int, runs: int) -> float:
    """Seconds of ``runs`` plain executes of lung1 over ``workers`` single-threaded processes, started and warmed
    (one execute each) before the clock starts."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded) as pool:
        list(pool.map(_execute, range(workers)))  # every worker started, imported and warm
        start = time.perf_counter()
        list(pool.map(_execute, range(runs), chunksize=1))
        return time.perf_counter() - start


def first_run(cases: pd.DataFrame, workers: int, threads: int, out: Path) -> float:
    """Seconds of one run as the first of a new process (whose imports are made before the clock starts, as the
    ``harmony`` command makes them before it runs)."""
    command = [sys.executable, __file__, "--first-run", str(workers), str(threads), str(out), *cases.iloc[0]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"first run with {workers} workers failed:\n{done.stderr}")
    return float(done.stdout.split()[-1])


def _first_run(workers: str, threads: str, out: str, *case: str) -> None:
    cases = pd.DataFrame([case], columns=[schema.CASE_ID, schema.SITE, schema.IMAGE, schema.MASK])
    variants = expand_design(DESIGN, seed=0, base_params=PARAMS)
    start = time.perf_counter()
    run_tasks(cases, variants, PARAMS, out, workers=int(workers), threads_per_worker=int(threads), progress=False,
              keep_features=False)
    print(time.perf_counter() - start)


def main() -> int:
    if sys.argv[1:2] == ["--first-run"]:  # a (c) or (d) of --cold, in this new process
        _first_run(*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-naive", action="store_true", help="leave the naive loop (a) out")
    parser.add_argument("--ceiling", type=int, default=0, metavar="RUNS",
                        help="also time RUNS (even) plain executes in one and in two warmed worker processes")
    parser.add_argument("--cold", action="store_true",
                        help="also run (c) and (d) as the first run of new processes, in each round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (b), (c), (d); the best of each counts")
    args = parser.parse_args()
    image_path, mask_path = DATA / f"{CASE_ID}_image.nrrd", DATA / f"{CASE_ID}_label.nrrd"
    if not image_path.is_file():
        print(f"reference data not found: {image_path} (set HARMONY_REFERENCE_DATA)", file=sys.stderr)
        return 2
    variants = expand_design(DESIGN, seed=0, base_params=PARAMS)
    kinds = pd.Series([v.kind for v in variants]).value_counts().to_dict()
    print(f"{len(variants)} variants of {CASE_ID} ({len({v.image_key for v in variants})} images): {kinds}")
    cases = pd.DataFrame({schema.CASE_ID: [CASE_ID], schema.SITE: ["pyradiomics"],
                          schema.IMAGE: [str(image_path)], schema.MASK: [str(mask_path)]})
    rounds: dict[str, list[float]] = {}  # per run, its seconds in each round
    results: dict[str, pd.Series] = {}
    fastest_two: tuple[float, list[float]] = (float("inf"), [])  # the fastest 2-worker run: seconds, its units'
    start_fork_server("processes")  # as by this process's first run: every round's workers fork from it
    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        runs = (("engine, this process (threaded)", "serial", 1, 0), ("engine, 1 worker", "processes", 1, 1),
                ("engine, 2 workers", "processes", 2, 0))
        for round_ in range(args.repeats):  # in rounds: a slow spell of the machine hits every configuration
            for name, executor, workers, threads in runs:
                start = time.perf_counter()
                run = run_tasks(cases, variants, PARAMS, Path(tmp) / f"{name} {round_}", executor=executor,
                                workers=workers, progress=False, threads_per_worker=threads)
                seconds = time.perf_counter() - start
                rounds.setdefault(name, []).append(seconds)
                if run.failed:
                    print(run.failures.to_string(), file=sys.stderr)
                    return 1
                got = values(run.features)
                if not results.setdefault(name, got).equals(got):
                    print(f"{name}: round {round_} differs from round 0", file=sys.stderr)
                    return 1
                if workers == 2 and seconds < fastest_two[0]:
                    fastest_two = (seconds, run.diagnostics["unit_seconds"])
                threads_used = run.diagnostics["threads_per_worker"] or "all cores'"
                print(f"{name}: {seconds:.1f} s ({run.diagnostics['units']} units, {threads_used} threads)")
            for workers, threads in ((1, 1), (2, 0)) if args.cold else ():
                out = Path(tmp) / f"cold {workers} {round_}"
                seconds = first_run(cases, workers, threads, out)
                rounds.setdefault(f"cold {workers}", []).append(seconds)
                if not values(read_table(out / "features.parquet", schema.FEATURES)).equals(results[runs[0][0]]):
                    print(f"cold run with {workers} workers differs", file=sys.stderr)
                    return 1
                print(f"engine, {workers} worker{'s' * (workers > 1)}, first run of a new process: {seconds:.1f} s")
    if not args.skip_naive:
        start = time.perf_counter()
        results["naive"] = values(naive(sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path)), variants))
        rounds["naive"] = [time.perf_counter() - start]
        print(f"naive: {rounds['naive'][0]:.1f} s")

    paired = sorted(one / two for one, two in zip(rounds["engine, 1 worker"], rounds["engine, 2 workers"]))
    timings = {name: min(seconds) for name, seconds in rounds.items()}  # the best of each: noise only adds time
    if args.repeats > 1:
        print(f"\nbest of {args.repeats} rounds; 1 worker / 2 workers in each round: "
              f"{', '.join(f'{r:.2f}' for r in paired)}x (median {statistics.median(paired):.2f}x)")
    unit_seconds = fastest_two[1]
    threaded, one, two = (timings[f"engine, {n}"] for n in ("this process (threaded)", "1 worker", "2 workers"))
    makespan = lpt_makespan(unit_seconds, 2)
    print(f"\nunits of the fastest 2-worker run: {len(unit_seconds)}, {sum(unit_seconds):.1f} s of work, largest "
          f"{max(unit_seconds):.1f} s; LPT makespan on 2 workers {makespan:.1f} s: ideal speed-up "
          f"{sum(unit_seconds) / makespan:.2f}x; achieved (1 worker / 2 workers) {one / two:.2f}x")
    print(f"threaded single process: {threaded:.1f} s; 2 workers gain {threaded / two:.2f}x over it "
          f"(at most {threaded / makespan:.2f}x: its time over the units' makespan)")
    cold_words = ""
    if args.cold:
        cold_one, cold_two = timings["cold 1"], timings["cold 2"]
        print(f"first run of a new process (every harmony command), best of {args.repeats}: 1 worker {cold_one:.1f} s, "
              f"2 workers {cold_two:.1f} s: {cold_one / cold_two:.2f}x")
        cold_words = f" cold_2v1={cold_one / cold_two:.2f}"
    ceiling_words = ""
    if args.ceiling:
        alone, pair = ceiling(1, args.ceiling), ceiling(2, args.ceiling)
        print(f"ceiling: {args.ceiling} plain executes in warmed worker processes, one {alone:.1f} s, two "
              f"{pair:.1f} s: {alone / pair:.2f}x (no start-up, planning or scheduling in it)")
        ceiling_words = f" ceiling_2v1={alone / pair:.2f}"
    engine_runs = [k for k in results if k != "naive"]
    identical = all(results[k].equals(results[engine_runs[0]]) for k in engine_runs)
    print(f"every engine run bit-identical: {identical}\n")
    if args.skip_naive:
        print(f"workers_2v1={one / two:.2f} workers_2v1_median={statistics.median(paired):.2f} "
              f"threaded_2v1={threaded / two:.2f}{cold_words}{ceiling_words} identical={identical}")
        return 0 if identical else 1
    diff = max(max_rel_diff(results["naive"], results[k]) for k in engine_runs)
    print("| run (27 variants of lung1) | seconds | per variant | speed-up |")
    print("|---|---:|---:|---:|")
    for name in ("naive", *engine_runs):
        label = "naive loop: apply + `execute`" if name == "naive" else f"harmony {name}"
        print(f"| {label} | {timings[name]:.1f} | {timings[name] / len(variants):.2f} | "
              f"{timings['naive'] / timings[name]:.1f}x |")
    print()
    print(f"ratio_1worker={timings['naive'] / threaded:.2f} ratio_2workers={timings['naive'] / two:.2f} "
          f"workers_2v1={one / two:.2f} workers_2v1_median={statistics.median(paired):.2f} "
          f"threaded_2v1={threaded / two:.2f}{cold_words}{ceiling_words} max_rel_diff={diff:.3g}")
    return 0 if identical and diff == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
