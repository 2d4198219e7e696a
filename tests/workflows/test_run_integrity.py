"""`harmony run` and damage: the lock over every stage, output digests, content-chained stages, temp files left
by a kill, and SIGKILL at a random moment then resume giving identical results."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import harmony.workflows.run as run_module
from harmony.cli import main
from harmony.core import schema
from harmony.core.files import write_table
from harmony.workflows.layout import FILES, STAGES
from tests.cli.test_run import TINY
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny experiment's config and its uninterrupted run (never modified by the tests)."""
    base = tmp_path_factory.mktemp("integrity")
    config = base / "tiny.toml"
    config.write_text(TINY)
    assert main(["run", str(config), "--out", str(base / "run"), "--quiet"]) == 0
    return config, base / "run"


def _copy(tiny, tmp_path) -> Path:
    """A copy of the tiny run, brought up to date at its new place (the report records experiment.out)."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny[1], run_dir)
    assert main(["run", str(tiny[0]), "--out", str(run_dir), "--quiet"]) == 0
    return run_dir


def _stages(out: str) -> dict[str, str]:
    return {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()
            if line and line.split()[0] in STAGES}


TABLES = ("features", "reliability", "harmonized", "site_effects", "harmonization_summary")


def _same_tables(a: Path, b: Path) -> None:
    for key in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(a / FILES[key]), pd.read_parquet(b / FILES[key]),
                                      check_exact=True, obj=key)


def test_a_second_run_is_refused_during_every_stage(tiny, tmp_path, monkeypatch, capsys):
    config, _ = tiny
    run_dir = tmp_path / "run"
    refusals: dict[str, tuple[int, str]] = {}

    def second_run(stage):
        code = main(["run", str(config), "--out", str(run_dir), "--quiet"])
        refusals[stage] = (code, capsys.readouterr().err)

    # the function each stage's work calls first: a second run starts while the stage runs
    for stage, name in [("cases", "simulate_cohort"), ("variants", "expand_design"), ("extraction", "run_tasks"),
                        ("reliability", "run_reliability"), ("harmonization", "run_harmonization"),
                        ("report", "write_report")]:
        original = getattr(run_module, name)

        def during(*args, _stage=stage, _original=original, **kwargs):
            second_run(_stage)
            if _stage == "reliability":  # a stage command (another process) writing into the run folder too
                done = subprocess.run([sys.executable, "-m", "harmony.cli", "reliability",
                                       str(run_dir / FILES["features"]), "--out", str(run_dir / "reliability")],
                                      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
                refusals["reliability command"] = (done.returncode, done.stderr)
            return _original(*args, **kwargs)

        monkeypatch.setattr(run_module, name, during)
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    assert set(refusals) == {*STAGES, "reliability command"}
    for stage, (code, err) in refusals.items():
        assert code == 2, stage
        assert f"another harmony run (pid {os.getpid()} on " in err and "started 20" in err, (stage, err)
        assert err.count("\n") == 1


def test_a_deleted_table_is_made_again_and_dependants_follow_its_content(tiny, tmp_path, capsys):
    config, reference = tiny
    run_dir = _copy(tiny, tmp_path)
    capsys.readouterr()
    (run_dir / FILES["features"]).unlink()
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    stages = _stages(capsys.readouterr().out)
    # re-consolidated from the task files: the same content, so what reads it is still up to date
    assert stages["extraction"] == "done"
    assert all(stages[s].startswith("skipped") for s in ("reliability", "harmonization", "report")), str(stages)
    _same_tables(run_dir, reference)

    (run_dir / FILES["reliability"]).unlink()  # a stage's output: that stage and the report run again
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    stages = _stages(capsys.readouterr().out)
    assert stages["reliability"] == "done" and stages["extraction"].startswith("skipped")
    _same_tables(run_dir, reference)


def test_a_table_rebuilt_with_other_content_reruns_every_stage_that_reads_it(tiny, tmp_path, monkeypatch, capsys):
    config, _ = tiny
    run_dir = _copy(tiny, tmp_path)
    capsys.readouterr()
    original = run_module.run_tasks

    def extraction_with_other_values(*args, **kwargs):  # as if the task files had held other values
        result = original(*args, **kwargs)
        path = run_dir / FILES["features"]
        features = pd.read_parquet(path)
        write_table(features.assign(value=features[schema.VALUE] * 1.01), path, schema.FEATURES)
        return result

    monkeypatch.setattr(run_module, "run_tasks", extraction_with_other_values)
    (run_dir / FILES["features"]).unlink()
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    stages = _stages(capsys.readouterr().out)
    assert {s: stages[s] for s in ("extraction", "reliability", "harmonization", "report")} == dict.fromkeys(
        ("extraction", "reliability", "harmonization", "report"), "done"), stages
    assert stages["cases"].startswith("skipped") and stages["variants"].startswith("skipped")


def test_an_output_changed_since_written_is_recomputed(tiny, tmp_path, capsys, caplog):
    config, reference = tiny
    run_dir = _copy(tiny, tmp_path)
    capsys.readouterr()
    path = run_dir / FILES["harmonized"]
    harmonized = pd.read_parquet(path)
    write_table(harmonized.assign(value=0.0), path, schema.HARMONIZED)  # valid, but not what the stage wrote
    leftover = run_dir / ".manifest.json.abcd_123.tmp"
    leftover.write_text("{half")  # as a kill in the middle of a manifest write leaves it
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    stages = _stages(capsys.readouterr().out)
    assert stages["harmonization"] == "done" and stages["reliability"].startswith("skipped")
    assert "harmonization/harmonized.parquet is missing or changed since this stage wrote it" in caplog.text
    _same_tables(run_dir, reference)
    assert not leftover.exists()


def test_sigkill_at_a_random_moment_then_resume_gives_identical_results(tiny, tmp_path):
    config, reference = tiny
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "harmony.cli", "run", str(config), "--out", str(run_dir), "--quiet"]
    seconds = json.loads((reference / "manifest.json").read_text())["wall_seconds"]
    moment = random.Random().uniform(1.0, 2.0 + seconds)  # import time (~1-2 s) plus the run's own
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(moment)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, f"killed at {moment:.2f} s: {resumed.stderr}"
    _same_tables(run_dir, reference)
    features = schema.FEATURES.validate(pd.read_parquet(run_dir / FILES["features"]))  # nothing duplicated
    assert len(features) == len(pd.read_parquet(reference / FILES["features"]))
    assert not list(run_dir.rglob("*.tmp")), f"killed at {moment:.2f} s"
    assert "another harmony run" not in resumed.stderr  # the dead run's lock was taken over, not a refusal
