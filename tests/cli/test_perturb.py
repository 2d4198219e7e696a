"""`harmony perturb`: a cases CSV and a design in; variants, failures, the manifest and the images out."""

from __future__ import annotations

import pandas as pd

from harmony.cli import main
from harmony.core import schema
from harmony.core.files import read_json
from tests.conftest import ball_case, write_cases_csv


def test_writes_variants_failures_manifest_and_images(tmp_path, capsys):
    write_cases_csv(tmp_path, {"big": ball_case(radius_mm=6.0), "tiny": ball_case(radius_mm=1.5)})
    (tmp_path / "design.toml").write_text('[[grid]]\nerode_dilate = { distance_mm = [-1.5, 1.0] }\n'
                                          '[[grid]]\nnoise = { level = 2.0 }\n')
    out = tmp_path / "out"
    code = main(["perturb", str(tmp_path / "cases.csv"), str(tmp_path / "design.toml"), "--out", str(out),
                 "--save-images", "--seed", "4", "--quiet"])
    assert code == 1  # the tiny case cannot be eroded by 1.5 mm within the guard
    variants = pd.read_parquet(out / "variants.parquet")
    failures = pd.read_parquet(out / "failures.parquet")
    assert len(variants) == 4
    assert failures[schema.CASE_ID].tolist() == ["tiny"] and "erosion by 1.5 mm" in failures[schema.ERROR].iloc[0]
    saved = sorted(p.name for p in (out / "images" / "big").iterdir())
    assert len(saved) == 8 and len(list((out / "images" / "tiny").iterdir())) == 6
    manifest = read_json(out / "manifest.json")
    assert manifest["tasks"] == {"total": 8, "done": 7, "failed": 1} and manifest["seeds"] == {"experiment": 4}
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text("[[grid]]\nnoise = { levels = [1.0] }\n")
    assert main(["perturb", str(tmp_path / "cases.csv"), str(tmp_path / "bad.toml"), "--out", str(out)]) == 2
    assert "bad.toml: grid[0].noise.levels: unknown key" in capsys.readouterr().err
