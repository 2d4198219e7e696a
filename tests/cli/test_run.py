"""`harmony run` end to end: a tiny simulated cohort, re-runs that skip finished stages, an upgraded extractor,
bad configs, and the stability study config on the pyradiomics sample cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import harmony.extraction.tasks
import harmony.workflows.run
from harmony.cli import main
from harmony.core import schema
from harmony.core.errors import ConfigError
from harmony.core.manifest import versions
from harmony.workflows.experiment import load_experiment
from harmony.workflows.layout import FIGURES_DIR, FILES, STAGES
from tests.conftest import PYRADIOMICS_CASES, ROOT, pyradiomics_cases_csv

EXPERIMENTS = ROOT / "experiments"


TINY = """
[experiment]
name = "tiny"
seed = 5

[cases.cohort.cohort]
subjects = 8
seed = 1
[cases.cohort.grid]
size = [28, 28, 28]
[cases.cohort.lesion]
radius_mm = 6.0
heterogeneity = 12.0
[cases.cohort.latent.heterogeneity]
distribution = "uniform"
low = 5.0
high = 25.0
[cases.cohort.scanners]
profiles = ["ct_sharp_1mm", "ct_standard_2mm_offset"]

[extraction.settings.setting]
binWidth = 10
label = 1
[extraction.settings.imageType]
Original = {}
[extraction.settings.featureClass]
firstorder = []
glcm = ["Contrast", "JointEntropy", "Idm"]

[[perturbations.grid]]
bin_width = { width = [5.0] }
[[perturbations.grid]]
erode_dilate = { distance_mm = [1.0] }

[engine]
executor = "serial"

[reliability]
bootstrap = 100
"""


def stage_records(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["stages"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    config = base / "tiny.toml"
    config.write_text(TINY)
    run_dir = base / "run"
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    return config, run_dir


@pytest.mark.slow
def test_tiny_run_writes_every_stage(tiny_run):
    _, run_dir = tiny_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"] == "run"
    assert set(manifest["stages"]) == set(STAGES)
    assert manifest["versions"]["pyradiomics_distribution"]
    assert manifest["tasks"] == {"total": 24, "done": 24, "failed": 0, "resumed": 0}
    assert manifest["seeds"]["experiment"] == 5 and manifest["seeds"]["cohort"] == 1
    cases = pd.read_parquet(run_dir / FILES["cases"])
    assert len(cases) == 8 and cases[schema.SITE].nunique() == 2
    variants = pd.read_parquet(run_dir / FILES["variants"])
    assert sorted(variants[schema.KIND]) == ["discretisation", "mask", "original"]
    features = pd.read_parquet(run_dir / FILES["features"])
    assert features.groupby([schema.CASE_ID, schema.VARIANT_ID]).ngroups == 24
    reliability = pd.read_parquet(run_dir / FILES["reliability"])
    assert set(reliability[schema.PERTURBATION]) == {"discretisation", "mask", "all"}
    harmonized = pd.read_parquet(run_dir / FILES["harmonized"])
    assert set(harmonized[schema.STAGE]) == {"raw", "combat"}
    page = (run_dir / "report.html").read_text()
    assert page.count("<img ") == 6 and "No task failed" in page
    assert {p.name for p in (run_dir / FIGURES_DIR).iterdir()} >= {"icc_heatmap.png", "pca_combat.png"}


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_redoes_what_changed(tiny_run, capsys):
    config, run_dir = tiny_run
    features = run_dir / FILES["features"]
    before = features.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped (up to date)") == len(STAGES)
    assert features.stat().st_mtime_ns == before
    # a reliability setting changes the reliability verdicts and the report, nothing upstream
    hashes = {k: v["input_hash"] for k, v in stage_records(run_dir).items()}
    assert main(["run", str(config), "--out", str(run_dir), "--quiet", "--set", "reliability.icc_min=0.5"]) == 0
    out = capsys.readouterr().out
    after = {k: v["input_hash"] for k, v in stage_records(run_dir).items()}
    changed = {k for k in hashes if hashes[k] != after[k]}
    assert changed == {"reliability", "report"}
    assert "reliability    done" in out and "extraction     skipped" in out
    assert features.stat().st_mtime_ns == before
    # the executor is how, not what: switching it does not redo the extraction
    assert main(["run", str(config), "--out", str(run_dir), "--quiet", "--set", "reliability.icc_min=0.5",
                 "--executor", "processes", "--workers", "2"]) == 0
    assert capsys.readouterr().out.count("skipped (up to date)") == len(STAGES)


def test_an_upgraded_extractor_reruns_every_stage_and_re_extracts(tiny_run, tmp_path, capsys, monkeypatch):
    config, shared_run = tiny_run
    run_dir = tmp_path / "run"  # a copy: the module's run stays as the other tests expect it
    shutil.copytree(shared_run, run_dir)
    features = run_dir / FILES["features"]
    before = features.stat().st_mtime_ns
    upgraded = {**versions(), "pyradiomics": "99.0"}
    monkeypatch.setattr(harmony.workflows.run, "versions", lambda: upgraded)
    monkeypatch.setattr(harmony.extraction.tasks, "extraction_versions", lambda: {"pyradiomics": "99.0"})
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out
    assert features.stat().st_mtime_ns != before


@pytest.mark.parametrize(("method", "options"), [("covbat", ["harmonization.covbat.n_pc=2"]),
                                               ("gam", ["harmonization.covariates=['truth_heterogeneity']",
                                                        "harmonization.gam.smooth=['truth_heterogeneity']",
                                                        "harmonization.gam.alpha=1.0", "harmonization.gam.df=5"])])
def test_harmonization_method_in_the_experiment_reruns_only_harmonization(tiny_run, tmp_path, capsys, method,
                                                                          options):
    config, shared_run = tiny_run
    run_dir = tmp_path / "run"  # a copy: the module's run stays as the other tests expect it
    shutil.copytree(shared_run, run_dir)
    capsys.readouterr()
    sets = [arg for option in [f"harmonization.method={method}", *options] for arg in ("--set", option)]
    assert main(["run", str(config), "--out", str(run_dir), "--quiet", *sets]) == 0
    out = capsys.readouterr()
    assert "harmonization  done" in out.out and "extraction     skipped" in out.out
    model = json.loads((run_dir / "harmonization" / "model.json").read_text())
    assert model["method"] == method
    assert out.err.count("fewer than 10 subjects") == 1  # 4 cases per site, said once


def test_config_without_cases_is_refused(tmp_path, capsys):
    config = tmp_path / "empty.toml"
    config.write_text('[experiment]\nname = "x"\n')
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "cases.csv" in err and "cases.cohort" in err and str(config) in err


@pytest.mark.slow
def test_stability_real_on_the_shared_pyradiomics_cases(pyradiomics_cases, tmp_path, capsys):
    sites = {"brain1": "mr", "breast1": "mr", "lung1": "ct"}
    csv = pyradiomics_cases_csv(tmp_path / "cases.csv", pyradiomics_cases, sites)
    run_dir = tmp_path / "run"
    code = main(["run", str(EXPERIMENTS / "stability_real.toml"), "--out", str(run_dir), "--quiet",
                 "--set", f"cases.csv={json.dumps(str(csv))}",
                 "--set", "perturbations.grid=[{bin_width = {width = [15.0]}}, {erode_dilate = {distance_mm = [1.0]}}]",
                 "--set", "reliability.bootstrap=100"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "harmonization  not run: disabled in the config" in out
    reliability = pd.read_parquet(run_dir / FILES["reliability"])
    assert set(reliability[schema.PERTURBATION]) == {"discretisation", "mask", "all"}
    assert (reliability[schema.N_CASES] == 3).all()
    features = pd.read_parquet(run_dir / FILES["features"])
    assert set(features[schema.CASE_ID]) == set(PYRADIOMICS_CASES)
    assert features[schema.FEATURE].str.startswith("original_").all()  # Original image type only
    page = (run_dir / "report.html").read_text()
    assert "Not run: disabled in the config" in page
    assert page.count("<img ") == 2  # stability figures only


def test_unknown_key_in_a_run_config_names_file_and_key(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text((EXPERIMENTS / "quickstart.toml").read_text() + "\n[report]\ncolour = 1\n")
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "report.colour" in err and "unknown key" in err
    with pytest.raises(ConfigError, match="report.colour"):
        load_experiment(config)
