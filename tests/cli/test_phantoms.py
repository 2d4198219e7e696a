"""`harmony phantoms`: a cohort spec in; the cases table, images and manifest out; bad keys exit 2."""

from __future__ import annotations

from harmony.cli import main
from harmony.core import schema
from harmony.core.cases import load_cases
from harmony.core.files import read_json
from tests.conftest import ROOT

DEMO = ROOT / "phantoms" / "cohort_demo.toml"


def test_writes_cases_and_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["phantoms", str(DEMO), "--out", str(out), "--seed", "3", "--quiet",
                 "--set", "cohort.subjects=4", "--set", "grid.size=[40, 40, 40]",
                 "--set", "latent.radius_mm.max=8.0"])
    assert code == 0
    cases = load_cases(out / "cases.csv")  # every image and mask exists and matches
    assert len(cases) == 4 and cases[schema.SITE].nunique() == 4
    manifest = read_json(out / "manifest.json")
    assert manifest["command"] == "phantoms" and manifest["seeds"] == {"cohort": 3}
    assert "4 cases of 4 subjects on 4 scanners" in capsys.readouterr().out
    assert main(["phantoms", str(DEMO), "--out", str(out), "--set", "cohort.subject=4"]) == 2
    assert "cohort.subject: unknown key" in capsys.readouterr().err
