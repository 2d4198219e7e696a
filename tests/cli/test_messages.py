"""The CLI speaks the user's words: consistent help, CLI spellings in errors, a closed pipe ends quietly."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from harmony import cli
from harmony.cli import build_parser, main
from harmony.harmonize.simulation import simulate_site_features
from tests.conftest import ROOT


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def _options(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {opt: action.help for action in parser._actions for opt in action.option_strings}


def test_help_texts_are_consistent_on_every_command():
    commands = dict(_subparsers(build_parser()))
    for name, sub in commands.items():
        options = _options(sub)
        if "--set" in options:
            assert options["--set"].startswith("override a value of the "), name
            assert "value value" not in options["--set"] and ") value" not in options["--set"], name
        if "--quiet" in options:
            assert options["--quiet"] == "no progress bars on a terminal, no progress lines in a log", name
    for name in ("validate", "extract", "run", "phantoms", "perturb", "reliability", "gate baseline", "gate check"):
        assert "--set" in _options(commands[name]), name
    for name in ("extract", "run", "phantoms", "perturb", "reliability", "harmonize", "gate baseline", "gate check"):
        assert "--quiet" in _options(commands[name]), name
    for name in ("extract", "perturb", "run"):
        assert _options(commands[name])["--label"].startswith("mask label of the ROI (default: "), name


def test_run_label_sets_the_cases_label(monkeypatch, capsys):
    seen = {}

    def fake(path, overrides, *, out, progress):
        seen["overrides"] = overrides
        raise cli.HarmonyError("stop here")

    monkeypatch.setattr("harmony.workflows.run.run_config", fake)
    assert main(["run", "quickstart", "--label", "2", "--quiet"]) == 2
    assert seen["overrides"] == ["cases.label=2"]
    assert capsys.readouterr().err == "harmony run: error: stop here\n"


def test_errors_name_options_as_the_cli_spells_them(tmp_path, capsys):
    cases, features = simulate_site_features(n_cases=9, n_features=4, n_sites=2, rng=np.random.default_rng(0))
    cases["site"], features["site"] = cases["site"].astype(str), features["site"].astype(str)
    lonely = cases["case_id"].iloc[0]
    cases.loc[cases["case_id"] == lonely, "site"] = "scanner9"
    features.loc[features["case_id"] == lonely, "site"] = "scanner9"
    features.to_parquet(tmp_path / "features.parquet")
    code = main(["harmonize", str(tmp_path / "features.parquet"), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "use --mean-only" in err and "mean_only=True" not in err
    assert not err.split("error: ", 1)[1].startswith("X:")


def test_harmonize_writes_the_harmonization_page(tmp_path, capsys):
    cases, features = simulate_site_features(n_cases=40, n_features=6, n_sites=2, rng=np.random.default_rng(1))
    features.to_parquet(tmp_path / "features.parquet")
    cases.assign(image="x.nrrd", mask="x.nrrd").to_csv(tmp_path / "cases.csv", index=False)
    out = tmp_path / "out"
    assert main(["harmonize", str(tmp_path / "features.parquet"), "--cases", str(tmp_path / "cases.csv"),
                 "--out", str(out), "--folds", "3", "--quiet"]) == 0
    assert "report: " in capsys.readouterr().out
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="harmonization">' in page and page.count("<img ") >= 3
    assert "mean |r| with the truth" in page and "mean_abs_correlation[" not in page
    assert sorted(p.name for p in (out / "figures").glob("*.png"))[:2] == ["pca_combat.png", "pca_raw.png"]


#: A child whose `harmony versions` prints far more than a pipe holds, so that closing the pipe breaks it.
_FLOOD = ("import sys, harmony.cli as c\n"
          "def flood(args):\n    for i in range(10**6): print('line', i)\n    return 0\n"
          "c.COMMANDS = [(n, h, a, flood if n == 'versions' else r) for n, h, a, r in c.COMMANDS]\n"
          "sys.exit(c.main(sys.argv[1:]))")


@pytest.mark.parametrize("argv", [["validate", "quickstart"], ["versions"]])
def test_a_closed_pipe_ends_quietly(argv):
    code = _FLOOD
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == ""
    assert proc.returncode == (141 if argv == ["versions"] else 0)
