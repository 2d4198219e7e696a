"""How ``harmony run`` grows with the cohort: simulated cohorts of 100, 300 and 1,000 cases x 10 variants.

Each cohort runs as ``harmony run`` in a child process (``--executor processes``, two workers): the quickstart's
simulated CT cohort on a 32^3 grid (3 scanners), its extraction settings (Original image; shape, firstorder,
GLCM, GLRLM, GLSZM), 10 variants per case (the original, 2 noise levels, 4 bin widths, erosion and dilation,
a resampling), reliability and harmonization (no report: its figures are a fixed cost). Printed per cohort:
wall time, tasks per second, the peak resident memory of the whole process tree (the run, its fork server and
workers, each shared page counted once: the sum of their proportional set sizes, read with psutil whenever the
sum of their resident sizes, polled every 0.1 s, grows by 1%; that sum's peak is printed too) and the run
folder's size per case. Then the growth: the time per added case between cohorts (linear time: equal within 15%)
and the exponents of time and memory in the case count (memory at the largest cohort <= 2x memory at the
smallest: exponent <= log 2 / log(n_max / n_min)).

After the largest cohort, its extraction is resumed with every task finished (``harmony.run_tasks`` on the
run's extraction folder: read the task store's index, check every task file's digest, stream the
consolidated table): the resume time is printed. ``--cases 100,300`` runs fewer, smaller cohorts. The last
line is machine-readable: ``time_per_case_ratio=<last step / first step> memory_ratio=<largest / smallest>
memory_exponent=<e> resume_seconds=<s>``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "harmony" / "examples"
PERTURBATIONS = """
[[perturbations.grid]]
noise = { level = [0.5, 1.0], relative = true }
[[perturbations.grid]]
bin_width = { width = [5.0, 7.5, 12.5, 15.0] }
[[perturbations.grid]]
erode_dilate = { distance_mm = [-1.0, 1.0] }
[[perturbations.grid]]
resample = { spacing_mm = [1.5, 1.5, 1.5], back_to_original = true }
"""


def experiment(folder: Path) -> Path:
    """The quickstart with the 10-variant design and the report off, written into ``folder``."""
    text = (EXAMPLES / "experiments" / "quickstart.toml").read_text()
    head, tail = text.split("# One grid per perturbation family")[0], text.split("[engine]")[1]
    head = head.replace('"../phantoms/cohort_params.yaml"', repr(str(EXAMPLES / "phantoms" / "cohort_params.yaml")))
    path = folder / "scale.toml"
    path.write_text(head + PERTURBATIONS + "\n[engine]" + tail + "\n[report]\nenabled = false\n")
    return path


def tree_bytes(process: psutil.Process, kind: str) -> int:
    """Bytes of a process and all its descendants (those that vanish while counted count 0): their resident
    sizes (``"rss"``, which count the pages the workers share with the fork server once in each), or their
    proportional set sizes (``"pss"``, each page counted once, where the system reports them (Linux), else RSS;
    10 ms a process)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            memory = p.memory_full_info() if kind == "pss" else p.memory_info()
            total += getattr(memory, kind, memory.rss)
        except psutil.Error:
            pass
    return total


def run_cohort(config: Path, cases: int, out: Path) -> dict[str, float]:
    """``harmony run`` of ``cases`` subjects: wall seconds, peak tree memory (PSS, and RSS), folder bytes, tasks."""
    command = [str(Path(sys.executable).parent / "harmony"), "run", str(config), "--out", str(out), "--executor",
               "processes", "--workers", "2", "--quiet", "--set", f"cases.cohort.cohort.subjects={cases}",
               "--set", "cases.cohort.grid.size=[32,32,32]"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, high, watched = 0, 0, psutil.Process(child.pid)

    def poll() -> None:
        nonlocal peak, high
        read_at = 0  # the resident sum when the proportional sizes, costly to read, were last read
        while child.poll() is None:
            rss = tree_bytes(watched, "rss")
            high = max(high, rss)
            if rss > 1.01 * read_at:
                read_at = rss
                peak = max(peak, tree_bytes(watched, "pss"))
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    output, _ = child.communicate()
    seconds = time.perf_counter() - start
    poller.join()
    if child.returncode != 0:
        raise SystemExit(f"harmony run failed ({child.returncode}):\n{output}")
    tasks = int(output.split(" extractions done")[0].rsplit(" of ", 1)[1])
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"seconds": seconds, "peak_memory": peak, "peak_rss": high, "bytes": size, "tasks": tasks}


def resume_seconds(run_dir: Path) -> tuple[float, int]:
    """Resume the finished extraction of a run: seconds, and the tasks found finished."""
    from harmony.core import schema
    from harmony.core.files import read_json, read_table
    from harmony.extraction.adapter import extraction_params
    from harmony.extraction.engine import run_tasks
    from harmony.perturb.variants import variants_from_table
    from harmony.workflows.layout import EXTRACTION_DIR, FILES

    config = read_json(run_dir / "manifest.json")["config"]
    cases = read_table(run_dir / FILES["cases"], schema.CASES)
    variants = variants_from_table(read_table(run_dir / FILES["variants"], schema.VARIANTS))
    start = time.perf_counter()
    result = run_tasks(cases, variants, extraction_params(config), run_dir / EXTRACTION_DIR, executor="processes",
                       workers=2, progress=False, label=config["cases"]["label"])
    return time.perf_counter() - start, result.resumed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="100,300,1000", help="cohort sizes, comma-separated")
    sizes = sorted(int(n) for n in parser.parse_args().cases.split(","))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        config = experiment(Path(tmp))
        for n in sizes:
            rows[n] = run_cohort(config, n, Path(tmp) / f"run{n}")
            r = rows[n]
            print(f"{n} cases: {r['seconds']:.1f} s, {r['tasks']} tasks, {r['tasks'] / r['seconds']:.1f} tasks/s, "
                  f"peak memory {r['peak_memory'] / 2**20:.0f} MiB, {r['bytes'] / n / 1024:.0f} KiB per case",
                  flush=True)
            if n != sizes[-1]:
                shutil.rmtree(Path(tmp) / f"run{n}")
        resume, resumed = resume_seconds(Path(tmp) / f"run{sizes[-1]}")
        print(f"resume of the finished {resumed}-task extraction ({sizes[-1]} cases): {resume:.1f} s")

    print("\n| cases | tasks | seconds | tasks/s | peak memory (MiB, PSS) | peak RSS sum (MiB) "
          "| run folder per case (KiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in rows.items():
        print(f"| {n} | {r['tasks']} | {r['seconds']:.1f} | {r['tasks'] / r['seconds']:.1f} | "
              f"{r['peak_memory'] / 2**20:.0f} | {r['peak_rss'] / 2**20:.0f} | {r['bytes'] / n / 1024:.0f} |")
    small, large = sizes[0], sizes[-1]
    steps = [(rows[b]["seconds"] - rows[a]["seconds"]) / (b - a) for a, b in itertools.pairwise(sizes)]
    time_exp = math.log(rows[large]["seconds"] / rows[small]["seconds"]) / math.log(large / small)
    mem_ratio = rows[large]["peak_memory"] / rows[small]["peak_memory"]
    mem_exp = math.log(mem_ratio) / math.log(large / small)
    print(f"\nseconds per added case: {', '.join(f'{s:.3f}' for s in steps)}; time exponent {time_exp:.2f}; "
          f"memory x{mem_ratio:.2f} for x{large / small:.0f} cases (exponent {mem_exp:.3f})")
    ratio = steps[-1] / steps[0] if len(steps) > 1 else 1.0
    print(f"time_per_case_ratio={ratio:.2f} memory_ratio={mem_ratio:.2f} memory_exponent={mem_exp:.3f} "
          f"resume_seconds={resume:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
