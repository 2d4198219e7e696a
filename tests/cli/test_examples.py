"""`harmony examples list|copy`, and built-in names on the command line from a directory outside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmony.cli import main
from harmony.core.resources import KINDS, builtin_path, catalog
from tests.conftest import ROOT


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory that is neither the checkout nor holds any example."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_list_shows_every_kind_name_and_description(elsewhere, capsys):
    assert main(["examples", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [line for line in lines if not line.startswith(" ")]
    assert [h.split(" ", 1)[0] for h in headers] == list(KINDS)
    rows = {tuple(line.split(None, 1)) for line in lines if line.startswith("  ")}
    expected = {(name, text) for examples in catalog().values() for name, text in examples.items()}
    assert rows == expected
    assert ("quickstart", catalog()["experiment"]["quickstart"]) in rows
    assert any(line.startswith("  ct_sharp_1mm  ") for line in lines)


def test_copy_then_validate_the_copy(tmp_path, elsewhere, capsys):
    dest = tmp_path / "mine"
    assert main(["examples", "copy", str(dest)]) == 0
    out = capsys.readouterr().out
    written = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(written) == sum(1 for top in ("experiments", "phantoms") for p in (ROOT / top).rglob("*") if p.is_file())
    for path in written:
        assert f"{path}\n" in out
        assert path.read_bytes() == (ROOT / path.relative_to(dest)).read_bytes()
    assert f"harmony run {dest / 'experiments' / 'quickstart.toml'}" in out

    assert main(["validate", str(dest / "experiments" / "quickstart.toml")]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["extraction"]["params"] == str((dest / "phantoms" / "cohort_params.yaml").resolve())
    assert config["_source"] == str((dest / "experiments" / "quickstart.toml").resolve())


def test_copy_refuses_to_overwrite(tmp_path, elsewhere, capsys):
    dest = tmp_path / "mine"
    assert main(["examples", "copy", str(dest)]) == 0
    quickstart = dest / "experiments" / "quickstart.toml"
    quickstart.write_text("# edited\n")
    capsys.readouterr()
    assert main(["examples", "copy", str(dest)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("harmony examples: error: ") and "already exists" in err
    assert quickstart.read_text() == "# edited\n"


def test_copy_onto_a_file_is_exit_2(tmp_path, elsewhere, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["examples", "copy", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"harmony examples: error: DIR {tmp_path / 'taken'}: is an existing file, not a folder"


def test_examples_needs_a_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["examples"])
    assert info.value.code == 2
    assert "required: SUBCOMMAND" in capsys.readouterr().err


def test_validate_a_builtin_name_from_anywhere(elsewhere, capsys):
    assert main(["validate", "quickstart"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["_source"] == str(builtin_path("experiment", "quickstart").resolve())
    assert Path(config["extraction"]["params"]) == builtin_path("params", "cohort_params").resolve()
    assert config["experiment"]["out"] == str(Path("reports") / "quickstart")


def test_a_folder_named_like_the_builtin_does_not_break_it(elsewhere, capsys):
    (elsewhere / "quickstart").mkdir()  # what `harmony run quickstart --out quickstart` leaves behind
    assert main(["validate", "quickstart"]) == 0
    assert json.loads(capsys.readouterr().out)["experiment"]["name"] == "quickstart"


def test_unknown_builtin_name_lists_the_known_ones(elsewhere, capsys):
    assert main(["validate", "quickstrat"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'quickstrat'" in err
    for name in catalog()["experiment"]:
        assert name in err
