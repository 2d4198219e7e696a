"""The experiments shipped for `harmony run` validate and say what they promise (the command itself:
tests/cli/test_run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony.workflows.experiment import load_experiment
from tests.conftest import ROOT

EXPERIMENTS = ROOT / "experiments"


@pytest.mark.parametrize("name", ["quickstart", "stability_real", "harmonization_benchmark"])
def test_shipped_experiments_validate(name):
    config = load_experiment(EXPERIMENTS / f"{name}.toml", ["cases.csv=/elsewhere/cases.csv"]
                             if name == "stability_real" else [])
    assert config["experiment"]["name"] == name
    # the harmonization benchmark extracts the originals only
    assert bool(config["perturbations"]["grid"]) is (name != "harmonization_benchmark")


def test_quickstart_meets_the_demo_brief():
    config = load_experiment(EXPERIMENTS / "quickstart.toml")
    cohort = config["cases"]["cohort"]
    assert cohort["cohort"]["subjects"] >= 24 and len(cohort["scanners"]["profiles"]) == 3
    kinds = {kind for grid in config["perturbations"]["grid"] for kind, spec in grid.items() if spec is not None}
    assert kinds == {"noise", "bin_width", "erode_dilate", "resample"}
    assert config["experiment"]["out"] == str(Path("reports") / "quickstart")
