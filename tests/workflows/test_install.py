"""Installed, not only checked out: build the wheel, install it into a fresh venv and use the bundled examples
from a directory outside the checkout.

Offline: the wheel is built with ``--no-isolation`` from a copy of the sources (so no stale build/ of the checkout
leaks in), which needs the test extra's ``setuptools>=77`` (pyproject's SPDX ``license`` string). The fresh venv
gets the dependencies through a ``.pth`` line naming this venv's site-packages, added after the wheel is
installed: a ``.pth`` path line does not run the editable install's finder, so harmony itself comes from the wheel
only, which the first test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

import harmony
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SOURCES = ("harmony", "experiments", "phantoms", "pyproject.toml", "README.md", "LICENSE")
# The quickstart made small: 9 subjects on its 3 scanners (3 per site, so ComBat and the site classifier's
# folds have every site twice), a 32^3 grid, and still all four perturbation families.
SMALL_QUICKSTART = ["--set", "cases.cohort.cohort.subjects=9", "--set", "cases.cohort.grid.size=[32,32,32]",
                    "--set", "reliability.bootstrap=100", "--workers", "2", "--quiet"]


class Installed:
    def __init__(self, venv: Path, work: Path):
        self.venv, self.work = venv, work
        self.bin = venv / "bin"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}}
        self.env.update(PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONNOUSERSITE="1",
                        MPLBACKEND="Agg")

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.bin / program), *args], cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=300)
        if check:
            command = " ".join([program, *args])
            assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def python(self, code: str) -> str:
        return self.run("python", "-c", code).stdout.strip()


def _build_wheel(out: Path) -> Path:
    src = out / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)  # harmony/examples stay links
        else:
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out / "dist"),
                            str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, ("building the wheel offline needs `build` and setuptools>=77 in this venv "
                                   f"(pip install -e '.[test]'):\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    (wheel,) = (out / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    wheel = _build_wheel(base)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    new_python = venv / "bin" / "python"
    # This venv's pip installs into the new one; the .pth comes after, so pip never sees the editable harmony.
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(new_python), "install", "--quiet", "--no-deps",
                          "--no-index", str(wheel)], timeout=300, capture_output=True, text=True)
    assert pip.returncode == 0, f"installing {wheel.name}:\n{pip.stdout}\n{pip.stderr}"
    purelib = subprocess.run([str(new_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib"))
    Path(purelib, "_harmony_test_deps.pth").write_text("".join(f"{path}\n" for path in deps))
    work = base / "work"
    work.mkdir()
    return Installed(venv, work)


def test_harmony_comes_from_the_wheel(installed):
    where = Path(installed.python("import harmony; print(harmony.__file__)"))
    assert where.is_relative_to(installed.venv), where
    assert not where.is_relative_to(ROOT)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert installed.run("harmony", "--version").stdout.strip() == f"harmony {version}"
    api = installed.python("import harmony; print(' '.join(harmony.__all__))").split()
    assert api == list(harmony.__all__) and "load_experiment" in api and "ComBat" in api


def test_the_wheel_ships_every_example_as_a_real_file(installed):
    listing = json.loads(installed.python(
        "import json; from harmony.core.resources import examples_dir as d; "
        "print(json.dumps({'root': str(d()), 'files': sorted(str(p.relative_to(d())) for p in d().rglob('*') "
        "if p.is_file()), 'links': [str(p) for p in d().rglob('*') if p.is_symlink()]}))"))
    root = Path(listing["root"])
    assert root.is_relative_to(installed.venv) and listing["links"] == []
    expected = sorted(str(p.relative_to(ROOT)) for top in ("experiments", "phantoms") for p in (ROOT / top).rglob("*")
                      if p.is_file())
    assert listing["files"] == expected
    for rel in expected:
        assert (root / rel).read_bytes() == (ROOT / rel).read_bytes()


def test_run_the_quickstart_by_name_outside_the_checkout(installed):
    out = installed.work / "qs"
    done = installed.run("harmony", "run", "quickstart", "--out", str(out), *SMALL_QUICKSTART)
    assert (out / "report.html").is_file()
    stages = dict(line.split(None, 1) for line in done.stdout.splitlines()[:6])
    assert stages == {stage: "done" for stage in
                      ("cases", "variants", "extraction", "reliability", "harmonization", "report")}
    assert "9 cases x 7 variants: 63 of 63 extractions done" in done.stdout
    assert (out / "cases.parquet").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["harmonization"]


def test_simulate_the_builtin_cohort_with_builtin_profiles(installed):
    out = installed.work / "cohort"
    done = installed.run("harmony", "phantoms", "cohort_demo", "--out", str(out), "--set", "cohort.subjects=4",
                         "--set", "grid.size=[32,32,32]", "--quiet")
    assert "4 cases of 4 subjects on 4 scanners" in done.stdout
    lines = (out / "cases.csv").read_text().splitlines()
    assert len(lines) == 5
    header = lines[0].split(",")
    sites = {row.split(",")[header.index("site")] for row in lines[1:]}
    assert sites == {"ct_sharp_1mm", "ct_smooth_5mm", "ct_standard_2mm_offset", "mr_bias_field"}


def test_copy_the_examples_and_validate_the_copy(installed):
    dest = installed.work / "my_examples"
    done = installed.run("harmony", "examples", "copy", str(dest))
    assert f"harmony run {dest / 'experiments' / 'quickstart.toml'}" in done.stdout
    config = json.loads(installed.run("harmony", "validate", str(dest / "experiments" / "quickstart.toml")).stdout)
    assert config["extraction"]["params"] == str((dest / "phantoms" / "cohort_params.yaml").resolve())
    again = installed.run("harmony", "examples", "copy", str(dest), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    listed = installed.run("harmony", "examples", "list").stdout
    assert "quickstart" in listed and "ct_sharp_1mm" in listed
