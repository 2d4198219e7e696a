"""Strict config validation: unknown keys, wrong types, ranges and --set overrides name file, key and value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core.config import (
    Field,
    Section,
    apply_overrides,
    load,
    parse_override,
    validate,
)
from harmony.core.errors import ConfigError
from harmony.workflows.experiment import load_experiment

SCHEMA = Section({
    "run": Section({
        "seed": Field(int, 0, min=0),
        "rate": Field(float, 0.5, min=0.0, max=1.0),
        "mode": Field(str, "fast", choices=("fast", "slow")),
        "sizes": Field(list, [1], item=Field(float, min=0.0, min_exclusive=True), min_items=1),
        "flag": Field(bool, False),
    }),
    "name": Field(str),
})


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_filled(tmp_path):
    cfg = load(write(tmp_path, 'name = "a"\n'), SCHEMA)
    assert cfg == {"run": {"seed": 0, "rate": 0.5, "mode": "fast", "sizes": [1], "flag": False}, "name": "a"}


@pytest.mark.parametrize(
    "body, key, fragment",
    [
        ('name = "a"\n[run]\nsede = 1\n', "run.sede", "unknown key"),
        ('name = "a"\nextra = 1\n', "extra", "unknown key"),
        ('name = "a"\n[run]\nseed = "1"\n', "run.seed", "expected an integer, got '1'"),
        ('name = "a"\n[run]\nseed = true\n', "run.seed", "expected an integer, got True"),
        ('name = "a"\n[run]\nseed = -1\n', "run.seed", "must be >= 0, got -1"),
        ('name = "a"\n[run]\nrate = 1.5\n', "run.rate", "must be <= 1.0, got 1.5"),
        ('name = "a"\n[run]\nmode = "medium"\n', "run.mode", "must be one of ['fast', 'slow'], got 'medium'"),
        ('name = "a"\n[run]\nsizes = [1.0, 0.0]\n', "run.sizes[1]", "must be > 0.0, got 0.0"),
        ('name = "a"\n[run]\nsizes = []\n', "run.sizes", "needs at least 1 item"),
        ('name = "a"\n[run]\nrate = nan\n', "run.rate", "must be finite"),
        ('name = "a"\nrun = 3\n', "run", "expected a table, got 3"),
        ("[run]\nseed = 1\n", "name", "required key is missing"),
    ],
)
def test_errors_name_file_key_and_value(tmp_path, body, key, fragment):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load(path, SCHEMA)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: ")
    assert fragment in message


def test_int_is_accepted_for_float_but_bool_is_not(tmp_path):
    assert load(write(tmp_path, 'name = "a"\n[run]\nrate = 1\n'), SCHEMA)["run"]["rate"] == 1.0
    with pytest.raises(ConfigError, match="run.flag: expected true or false, got 1"):
        load(write(tmp_path, 'name = "a"\n[run]\nflag = 1\n'), SCHEMA)


def test_syntax_error_and_missing_file_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load(write(tmp_path, "name = \n", "bad.toml"), SCHEMA)
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load(tmp_path / "nope.toml", SCHEMA)


def test_overrides_are_validated_the_same_way_and_attributed_to_set(tmp_path):
    path = write(tmp_path, 'name = "a"\n')
    assert load(path, SCHEMA, ["run.seed=7", "run.mode=slow"])["run"] == {
        "seed": 7, "rate": 0.5, "mode": "slow", "sizes": [1], "flag": False}
    with pytest.raises(ConfigError, match=r"^--set: run\.seed: must be >= 0, got -3$"):
        load(path, SCHEMA, ["run.seed=-3"])
    with pytest.raises(ConfigError, match=r"^--set: run\.sed: unknown key"):
        load(path, SCHEMA, ["run.sed=3"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load(path, SCHEMA, ["run.seed"])
    with pytest.raises(ConfigError, match="name is not a table"):
        load(path, SCHEMA, ["name.x=1"])


def test_parse_override_reads_toml_values_and_falls_back_to_text():
    assert parse_override("a.b=1.5") == ("a.b", 1.5)
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override('a.b="x y"') == ("a.b", "x y")
    assert parse_override("a.b=reports/run 1") == ("a.b", "reports/run 1")


def test_overrides_do_not_mutate_their_input():
    data = {"run": {"seed": 1}}
    out, keys = apply_overrides(data, ["run.seed=2"])
    assert data == {"run": {"seed": 1}} and out == {"run": {"seed": 2}} and keys == {"run.seed"}


@settings(deadline=None, max_examples=50)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_range_check_is_exact(rate):
    ok = 0.0 <= rate <= 1.0
    try:
        out = validate({"name": "a", "run": {"rate": rate}}, SCHEMA)
    except ConfigError as exc:
        assert not ok and "run.rate" in str(exc)
    else:
        assert ok and math.isclose(out["run"]["rate"], rate)


def test_experiment_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    path = write(sub, '[experiment]\nname = "x"\n[cases]\ncsv = "data/cases.csv"\n')
    cfg = load_experiment(path)
    assert cfg["cases"]["csv"] == str((sub / "data" / "cases.csv").resolve())
    assert cfg["experiment"]["out"].endswith("reports/x")


def test_paths_given_with_set_resolve_against_the_working_directory(tmp_path, monkeypatch):
    sub = tmp_path / "cfg"
    sub.mkdir()
    path = write(sub, '[experiment]\nname = "x"\n[extraction]\nparams = "p.yaml"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment(path, ["cases.csv=mine/cases.csv"])
    assert cfg["cases"]["csv"] == str((tmp_path / "mine" / "cases.csv").resolve())
    assert cfg["extraction"]["params"] == str((sub / "p.yaml").resolve())
