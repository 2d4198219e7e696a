"""Bad output paths and numeric options on every command: one line naming the path or option, exit 2, no traceback."""

from __future__ import annotations

import os

import pytest

from harmony.cli import main

#: Every command that writes into a folder, with what it needs besides that folder (the inputs need not
#: exist: the output folder is checked first, before any input is read).
WRITERS = {
    "extract": ["extract", "cases.csv", "--params", "params.yaml", "--out"],
    "perturb": ["perturb", "cases.csv", "design.toml", "--out"],
    "phantoms": ["phantoms", "cohort.toml", "--out"],
    "reliability": ["reliability", "features.parquet", "--out"],
    "harmonize": ["harmonize", "features.parquet", "--out"],
    "run": ["run", "quickstart", "--out"],
    "gate baseline": ["gate", "baseline", "--out"],
    "gate check": ["gate", "check", "--baseline", "baseline", "--out"],
    "gate ibsi": ["gate", "ibsi", "--out"],
    "examples copy": ["examples", "copy"],
}


def _bad_paths(tmp_path):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    return {
        "an existing file": (a_file, "is an existing file"),
        "under a file": (a_file / "out", "lies under the file"),
        "a name too long": (tmp_path / ("n" * 300), "longer than the file system allows"),
    }


@pytest.mark.parametrize("problem", ["an existing file", "under a file", "a name too long"])
@pytest.mark.parametrize("command", list(WRITERS))
def test_a_bad_output_folder_is_one_line_and_exit_2(command, problem, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, message = _bad_paths(tmp_path)[problem]
    assert main([*WRITERS[command], str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err and str(path)[:60] in err


@pytest.mark.parametrize("command", list(WRITERS))
def test_an_output_folder_that_is_not_writable_is_refused(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "read_only"
    locked.mkdir()
    real_access = os.access
    # root may write anywhere, so the refusal is shown by the permission the check asks of the system
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    assert main([*WRITERS[command], str(locked / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{locked} is not writable" in err


#: (argv, the option's message) of numeric options out of their range, on every command that has them.
BAD_NUMBERS = [
    (["harmonize", "f.parquet", "--out", "o", "--folds", "-3"], "--folds: must be >= 2, got -3"),
    (["harmonize", "f.parquet", "--out", "o", "--folds", "1"], "--folds: must be >= 2, got 1"),
    (["harmonize", "f.parquet", "--out", "o", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["extract", "c.csv", "--params", "p.yaml", "--out", "o", "--workers", "-2"], "--workers: must be >= 0, got -2"),
    (["extract", "c.csv", "--params", "p.yaml", "--out", "o", "--repeats", "0"], "--repeats: must be >= 1, got 0"),
    (["extract", "c.csv", "--params", "p.yaml", "--out", "o", "--label", "0"], "--label: must be >= 1, got 0"),
    (["extract", "c.csv", "--params", "p.yaml", "--out", "o", "--workers", "two"], "expected an integer, got 'two'"),
    (["run", "quickstart", "--workers", "-1"], "--workers: must be >= 0, got -1"),
    (["perturb", "c.csv", "d.toml", "--out", "o", "--seed", "-5"], "--seed: must be >= 0, got -5"),
    (["perturb", "c.csv", "d.toml", "--out", "o", "--label", "-1"], "--label: must be >= 1, got -1"),
    (["phantoms", "cohort_demo", "--out", "o", "--seed", "-1"], "--seed: must be >= 0, got -1"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_NUMBERS])
def test_numeric_options_are_checked_on_every_command(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_set_values_are_range_checked_too(tmp_path, capsys):
    assert main(["run", "quickstart", "--out", str(tmp_path / "o"), "--set", "engine.workers=-1"]) == 2
    err = capsys.readouterr().err
    assert "engine.workers" in err and "-1" in err and err.count("\n") == 1
